// LRSA web page: no framework, no network access beyond this server. User text is only ever
// inserted with textContent (never innerHTML).
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const form = $("form"), text = $("text"), fileInput = $("image"), drop = $("drop");
  const preview = $("preview"), previewFigure = $("preview-figure"), previewCaption = $("preview-caption");
  const clearImage = $("clear-image"), submit = $("submit"), busy = $("busy"), errorBox = $("error");
  const result = $("result");
  const NAMES = { POS: "positive", NEU: "neutral", NEG: "negative" };
  let imageFile = null;
  let imageUrl = null;
  let maxChars = null;

  fetch("v1/model").then((r) => r.ok ? r.json() : null).then((info) => {
    if (info && info.serving) { maxChars = info.serving.limits.max_text_chars; updateCounter(); }
    const side = info && info.model && info.model.image_side;
    if (side === "captions") {
      $("image-text-note").textContent = "(read by this model in place of the photo)";
      $("image-text-help").hidden = false;
    } else if (side === "none") {
      $("image-text-note").textContent = "(not used by this model)";
    }
    if (info && info.model && info.model.host === "aspect") {  // MASC: the user names the aspects
      $("aspects-block").hidden = false;
      $("aspects-input").required = true;
    }
  }).catch(() => {});

  // What the page says for an API error: our own 4xx messages are written for people; a 5xx is a server
  // fault whose details (a Python exception) belong in the server log, never on the page.
  function describeError(status, err) {
    if (!err) return `The server answered HTTP ${status} without an explanation. Please try again.`;
    if (status >= 500) {
      return err.code === "overloaded"
        ? "The server is busy right now. Please try again in a moment."
        : "The model could not analyse this post. This is a fault on the server, not in your post; " +
          `the server log has the details (${err.code}, HTTP ${status}).`;
    }
    return `${err.message} (${err.code}, HTTP ${status})`;
  }

  function updateCounter() {
    $("counter").textContent = maxChars ? `${text.value.length} / ${maxChars} characters` : "";
  }
  text.addEventListener("input", updateCounter);

  function setImage(file) {
    if (imageUrl) URL.revokeObjectURL(imageUrl);
    imageFile = file || null;
    imageUrl = file ? URL.createObjectURL(file) : null;
    previewFigure.hidden = !file;
    clearImage.hidden = !file;
    if (file) {
      preview.src = imageUrl;
      previewCaption.textContent = `${file.name} (${Math.round(file.size / 1024)} KiB)`;
    } else {
      preview.removeAttribute("src");
      fileInput.value = "";
    }
  }

  fileInput.addEventListener("change", () => setImage(fileInput.files[0]));
  clearImage.addEventListener("click", () => { setImage(null); fileInput.focus(); });
  ["dragenter", "dragover"].forEach((ev) => drop.addEventListener(ev, (e) => {
    e.preventDefault(); drop.classList.add("dragover");
  }));
  ["dragleave", "drop"].forEach((ev) => drop.addEventListener(ev, (e) => {
    e.preventDefault(); drop.classList.remove("dragover");
  }));
  drop.addEventListener("drop", (e) => {
    const f = e.dataTransfer && e.dataTransfer.files && e.dataTransfer.files[0];
    if (f) setImage(f);
  });
  [text, $("image-text")].forEach((box) => box.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) { e.preventDefault(); form.requestSubmit(); }
  }));

  function showError(message) {
    errorBox.textContent = message;
    errorBox.hidden = false;
  }

  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    errorBox.hidden = true;
    result.hidden = true;  // never leave the previous post's result under a new post's error
    if (!text.value.trim()) { showError("Please enter the text of a post."); text.focus(); return; }
    const aspectsBox = $("aspects-input");
    if (aspectsBox.required && !aspectsBox.value.trim()) {
      showError("Please name at least one aspect of the post (one per line)."); aspectsBox.focus(); return;
    }
    const body = new FormData();
    body.append("text", text.value);
    if (imageFile) body.append("image", imageFile, imageFile.name);
    const imageText = $("image-text").value;
    if (imageText.trim()) body.append("image_text", imageText);
    if (aspectsBox.required) body.append("aspects", aspectsBox.value);
    body.append("use_rationales", $("use-rationales").checked ? "true" : "false");
    if ($("explain").checked) body.append("explain", "true");
    submit.disabled = true;
    busy.textContent = "Analysing…";
    try {
      const response = await fetch("v1/predict", { method: "POST", body });
      const data = await response.json().catch(() => null);
      if (!response.ok) {
        showError(describeError(response.status, data && data.error));
        return;
      }
      render(data, imageText.trim());
    } catch (err) {
      showError(`The server could not be reached: ${err}`);
    } finally {
      submit.disabled = false;
      busy.textContent = "";
    }
  });

  function pct(x) { return `${Math.round(x * 100)}%`; }

  const INPUT_NAMES = { text: "tweet words", V: "image", L_t: "text rationale", L_i: "image rationale" };

  // A small stacked bar of what one aspect leaned on (attribution.shares) and its numbers in words.
  function leanedBar(att) {
    const box = document.createElement("div");
    box.className = "leaned";
    const bar = document.createElement("span");
    bar.className = "bar";
    bar.setAttribute("role", "img");
    const parts = [];
    for (const k of ["text", "V", "L_t", "L_i"]) {
      const share = att.shares[k] || 0;
      const seg = document.createElement("span");
      seg.className = `in-${k}`;
      seg.dataset.input = k;
      seg.dataset.share = share.toFixed(4);
      seg.style.width = `${(share * 100).toFixed(2)}%`;
      seg.title = `${INPUT_NAMES[k]} ${pct(share)}`;
      bar.append(seg);
      if (share > 0) parts.push(`${INPUT_NAMES[k]} ${pct(share)}`);
    }
    const words = (parts.length ? parts.join(", ") : "no single input moved it") +
      ` (${att.method === "intervention" ? "by removing each input" : "read from the model"})`;
    bar.setAttribute("aria-label", `Leaned on: ${words}`);
    const caption = document.createElement("span");
    caption.className = "leaned-words";
    caption.textContent = `leaned on: ${words}`;
    box.append(bar, caption);
    return box;
  }

  // The rationale text with the words that mattered to some aspect marked (character spans of attribution.tokens).
  function markRationale(el, textValue, cues) {
    el.replaceChildren();
    const spans = [...cues.values()].sort((a, b) => a.start - b.start);
    let pos = 0;
    for (const c of spans) {
      if (c.start < pos || c.end > textValue.length) continue;
      el.append(document.createTextNode(textValue.slice(pos, c.start)));
      const m = document.createElement("mark");
      m.className = "cue";
      m.dataset.mass = c.mass.toFixed(4);
      m.title = `mattered to ${c.aspects.join(", ")}: attention ${pct(c.mass)}` +
        (c.effect == null ? "" : `, removing it changes the probability by ${(-c.effect * 100).toFixed(1)} points`);
      m.textContent = textValue.slice(c.start, c.end);
      el.append(m);
      pos = c.end;
    }
    el.append(document.createTextNode(textValue.slice(pos)));
  }

  function render(data, imageText) {
    const p = data.prediction;
    // The post with each aspect highlighted (character spans refer to prediction.text).
    const post = $("post");
    post.replaceChildren();
    const aspects = [...p.aspects].sort((a, b) => a.char_start - b.char_start);
    let pos = 0;
    for (const a of aspects) {
      if (a.char_start < pos) continue; // overlapping spans are listed below but highlighted once
      post.append(document.createTextNode(p.text.slice(pos, a.char_start)));
      const mark = document.createElement("mark");
      mark.className = `aspect ${a.polarity.toLowerCase()}`;
      mark.dataset.polarity = a.polarity;
      mark.dataset.confidence = a.confidence.toFixed(3);
      mark.title = `${NAMES[a.polarity]}, confidence ${pct(a.confidence)}`;
      mark.append(document.createTextNode(p.text.slice(a.char_start, a.char_end)));
      const conf = document.createElement("span");
      conf.className = "conf";
      conf.textContent = `${a.polarity} ${pct(a.confidence)}`;
      mark.append(conf);
      post.append(mark);
      pos = a.char_end;
    }
    post.append(document.createTextNode(p.text.slice(pos)));

    const list = $("aspects");
    list.replaceChildren();
    for (const a of aspects) {
      const li = document.createElement("li");
      li.dataset.polarity = a.polarity;
      const chip = document.createElement("span");
      chip.className = `aspect ${a.polarity.toLowerCase()}`;
      chip.textContent = a.text;
      li.append(chip, document.createTextNode(
        ` ${NAMES[a.polarity]}, confidence ${pct(a.confidence)} ` +
        (a.end - a.start === 1 ? `(word ${a.start + 1})` : `(words ${a.start + 1}–${a.end})`)));
      if (a.attribution) li.append(leanedBar(a.attribution));
      list.append(li);
    }
    $("no-aspects").hidden = aspects.length > 0;
    const notes = $("notes");
    notes.replaceChildren(...(p.notes || []).map((n) => { const li = document.createElement("li"); li.textContent = n; return li; }));
    notes.hidden = !(p.notes && p.notes.length);

    const r = p.rationale;
    $("no-rationales").hidden = p.used_rationales;
    $("rationales").hidden = !r;
    const explained = aspects.some((a) => a.attribution);
    $("leaned-legend").hidden = !explained;
    if (r) {
      // who wrote each part (the writer the model was trained with, a substitute named for this server, or
      // nobody here: then the part is empty and the note says why)
      const writers = p.rationale_writers || {};
      for (const [part, id, value, none] of [["text", "rationale-text", r.text, "(empty)"],
                                             ["image", "rationale-image", r.image, "(no image rationale)"]]) {
        const w = writers[part];
        $(id).textContent = value || (w && !w.writer ? "(empty: no writer of this part here)" : none);
        const by = $(`${id}-writer`);
        by.textContent = !w ? "" : w.writer
          ? `Written by ${w.writer}` + (w.substitute ? `, a substitute for ${w.trained_writer}, the writer this ` +
            "model was trained with" : "")
          : w.note;
        by.hidden = !w;
      }
      for (const [k, id, value] of [["L_t", "rationale-text", r.text], ["L_i", "rationale-image", r.image]]) {
        const cues = new Map();  // one mark per word: the largest attention any aspect put on it
        for (const a of aspects) {
          for (const t of (a.attribution && a.attribution.tokens[k]) || []) {
            const key = `${t.start}:${t.end}`;
            const c = cues.get(key) || { start: t.start, end: t.end, mass: 0, effect: null, aspects: [] };
            c.mass = Math.max(c.mass, t.mass);
            if (t.effect != null && (c.effect == null || Math.abs(t.effect) > Math.abs(c.effect))) c.effect = t.effect;
            c.aspects.push(a.text);
            cues.set(key, c);
          }
        }
        if (value && cues.size) markRationale($(id), value, cues);
      }
      $("provenance").textContent = JSON.stringify(r.provenance, null, 2);
    }

    const imgBlock = $("result-image-block");
    imgBlock.hidden = !(imageUrl && data.image);
    if (imageUrl && data.image) {
      $("result-image").src = imageUrl;
      $("result-image").alt = `The image sent with the post (${data.image.width}×${data.image.height} ${data.image.format})`;
    }
    const described = $("result-image-text");
    described.hidden = !imageText;
    described.textContent = imageText ? `Image described as: ${imageText}` : "";
    const t = data.server;
    const stages = Object.entries(p.timings_ms || {}).map(([k, v]) => `${k} ${v.toFixed(1)} ms`).join(", ");
    $("timings").textContent = `Server: ${t.total_ms.toFixed(1)} ms in all (batch of ${t.batch_posts})` +
      (stages ? `; model: ${stages}` : "");
    result.hidden = false;
    result.focus();
  }
})();
