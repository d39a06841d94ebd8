"""Posts -> predictions: what ``LRSA.predict_batch`` runs, apart from the public API.

Contract: ``PostPredictor(net, tokenizer, run, side_encoder_spec, ...).predict_batch(posts)`` takes posts
(dicts with ``text`` and optional ``id`` / ``image`` / ``image_text``, plus ``aspects`` /
``aspect_rationales`` for aspect-host checkpoints) and returns one ``Prediction`` per post, in order. For
each group of ``batch_size`` posts it
  1. tokenises the text (``tokenize``: tweet words and their character spans) and resolves given aspects;
  2. reads the image as the model was trained to (``captions``: the given ``image_text``; ``pixels``:
     EfficientNet-Lite0 regions of the photo); a post without it gets an empty, masked visual memory and a
     note saying so;
  3. has L_t and L_i written (``lrsa.rationales.rationalize``; never from labels) by the writers the model
     was trained with (``rationale_writers``: one per part, recorded in the checkpoint), or by the substitute
     the caller named (``rationale_backend``). A trained writer that cannot run here (a published bundle such
     as MiniGPT-4's, an endpoint nobody configured) leaves its part empty: the model reads an empty, masked
     memory there, never another writer's text, and the prediction's ``rationale_writers`` and ``notes`` say
     who wrote each part, or why it is empty;
  4. encodes the side texts (the frozen side encoder, or token ids for ``side_encoder: shared``) into side
     tables, collates the items (one per word window of a post, or one per given aspect) and runs the net;
  5. maps the decoded word spans back to the post (a span is kept from the window in which its first word
     is most central) and to character offsets.
Errors name the post (``post N``, counted over the whole call). It imports nothing above the model stage.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import torch

from lrsa.data.schema import PredictedAspect, Prediction, Rationale, RationalePart

NO_IMAGE_NOTE = "no image: predicted from the text alone (the visual memory is empty)"

_TOKEN = re.compile(r"https?://\S+|www\.\S+|[@#]\w+|\w+(?:['’]\w+)*|[^\w\s]+", re.UNICODE)


def tokenize(text: str) -> tuple[list[str], list[tuple[int, int]]]:
    """Tweet words and their character spans in ``text`` (hashtags and mentions stay whole)."""
    words, spans = [], []
    for m in _TOKEN.finditer(text):
        words.append(m.group())
        spans.append((m.start(), m.end()))
    return words, spans


def resolve_aspects(given: list[Any], words: list[str], where: str) -> list[tuple[int, int]]:
    """Given aspects -> word spans of ``words``: a surface string is found as whole words (first occurrence,
    exact case first, then ignoring case); ``{"start", "end"}`` are word indices (end exclusive)."""
    if not isinstance(given, list):
        raise ValueError(f"{where}: aspects must be a list")
    out = []
    for j, a in enumerate(given):
        if isinstance(a, str):
            target = tokenize(a)[0]
            if not target:
                raise ValueError(f"{where}: aspect {j} is empty")
            k = len(target)
            hits = [i for i in range(len(words) - k + 1) if words[i:i + k] == target] or \
                [i for i in range(len(words) - k + 1) if [w.lower() for w in words[i:i + k]] == [t.lower() for t in target]]
            if not hits:
                raise ValueError(f"{where}: aspect {a!r} does not occur as whole words in the text")
            out.append((hits[0], hits[0] + k))
        elif isinstance(a, dict) and isinstance(a.get("start"), int) and isinstance(a.get("end"), int):
            if not 0 <= a["start"] < a["end"] <= len(words):
                raise ValueError(f"{where}: aspect {j} span [{a['start']}, {a['end']}) is outside the "
                                 f"text's {len(words)} words")
            out.append((a["start"], a["end"]))
        else:
            raise ValueError(f"{where}: aspect {j} must be a string or {{'start': int, 'end': int}}")
    return out


def aspect_rationales(given: list[Any] | None, n: int, where: str) -> list[Rationale | None]:
    """The rationales given with ``n`` aspects (one per aspect, ``None``: that aspect uses the post's)."""
    if given is None:
        return [None] * n
    if not isinstance(given, list) or len(given) != n:
        raise ValueError(f"{where}: aspect_rationales must be a list with one entry (or None) per aspect ({n})")
    out = []
    for r in given:
        if r is None:  # this aspect uses the post's rationale
            out.append(None)
        elif isinstance(r, Rationale):
            out.append(r)
        elif isinstance(r, dict) and all(isinstance(r.get(k, ""), str) for k in ("text", "image")):
            out.append(Rationale(text=r.get("text", ""), image=r.get("image", ""),
                                 provenance={"backend": "user", "level": "aspect"}))
        else:
            raise ValueError(f"{where}: each aspect rationale is a Rationale or {{'text', 'image'}} strings")
    return out


class PostPredictor:
    """Runs posts through a loaded network (see the module doc). ``side_encoder_spec``: the checkpoint's
    ``side_encoder`` record (backbone, max_tokens, fingerprint) or None; ``rationale_writers``: the
    checkpoint's writer of each part (``lrsa.rationales.writers``), None for a model without rationales;
    ``rationale_backend``: a substitute writer the user named for both parts (a backend name of
    ``lrsa.rationales`` or a backend object), or None: the trained writers."""

    def __init__(self, net: Any, tokenizer: Any, run: Any, side_encoder_spec: dict[str, Any] | None,
                 precision: str, cache_dir: str | Path | None = None, rationale_backend: Any = None,
                 rationale_writers: dict[str, dict[str, Any]] | None = None):
        self.net = net
        self.tokenizer = tokenizer
        self.run = run
        self.side_encoder_spec = side_encoder_spec
        self.precision = precision
        self.cache_dir = cache_dir
        self.rationale_backend = rationale_backend
        self.rationale_writers = rationale_writers
        self._plan: dict[str, dict[str, Any]] | None = None
        self._side_encoder = None
        self._pixels = None

    # ---------------------------------------------------------------- side inputs

    def writer_plan(self) -> dict[str, dict[str, Any]]:
        """Per part (``text``, ``image``): ``backend`` (None: the part stays empty), ``part`` (the
        ``RationalePart`` every prediction reports). Resolved once; empty for a model without rationales."""
        if self._plan is None:
            from lrsa.rationales.writers import PART_NAMES, PARTS, describe_backend, runnable, same_writer

            plan: dict[str, dict[str, Any]] = {}
            trained = self.rationale_writers or {}
            if self.run.model.uses_rationales and not trained:
                raise ValueError("this checkpoint records no rationale writers and no rationale source")
            sub = sub_writer = None
            if self.rationale_backend is not None:
                from lrsa.rationales import make_backend

                b = self.rationale_backend
                sub = make_backend(b) if isinstance(b, str) else b
                sub_writer = describe_backend(sub)
            for part, writer in trained.items():
                name = PART_NAMES[part]
                if sub is not None:
                    differs = not same_writer(sub_writer, writer)
                    note = (f"{name}: written by {sub_writer['name']}, named by the user in place of "
                            f"{writer['name']}, the writer this model was trained with") if differs else None
                    plan[part] = {"backend": sub, "writer": sub_writer, "part": RationalePart(
                        writer=sub_writer["name"], trained_writer=writer["name"], substitute=differs, note=note)}
                    continue
                backend, why = runnable(writer)
                note = None if backend is not None else \
                    f"{name}: written by {writer['name']} at training time; {why}, left empty"
                plan[part] = {"backend": backend, "writer": writer, "part": RationalePart(
                    writer=writer["name"] if backend is not None else None, trained_writer=writer["name"],
                    note=note)}
            # parts with the same writer share one backend (one call writes both)
            if len(plan) == 2 and plan["text"]["backend"] is not None and plan["image"]["backend"] is not None \
                    and same_writer(plan["text"]["writer"], plan["image"]["writer"]):
                plan["image"]["backend"] = plan["text"]["backend"]
            self._plan = {p: plan[p] for p in PARTS if p in plan}
        return self._plan

    def backend_name(self) -> str:
        """The substitute's name, the one backend writing both parts, or each part's writer."""
        b = self.rationale_backend
        if b is not None:
            return b if isinstance(b, str) else getattr(b, "name", type(b).__name__)
        plan = self.writer_plan()
        names = {p: (x["writer"].get("backend") if x["backend"] is not None else None) for p, x in plan.items()}
        if len(set(names.values())) == 1 and None not in names.values():
            return next(iter(names.values()))
        return "; ".join(f"{'L_t' if p == 'text' else 'L_i'}: {n or 'none (left empty)'}" for p, n in names.items())

    @property
    def side_encoder(self):
        """The frozen side encoder the model was trained with (its weights checked), or None."""
        if self._side_encoder is None:
            from lrsa.model.lrsa import load_side_encoder

            self._side_encoder = load_side_encoder(self.side_encoder_spec, self.cache_dir, self.precision)
        return self._side_encoder

    def side_tables(self, texts: dict[str, list[str]]) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        if self.run.model.side_encoder == "shared":
            from lrsa.model.inputs import token_table

            return {k: token_table(self.tokenizer, v, self.run.model.side_max_tokens) for k, v in texts.items()}
        return {k: self.side_encoder.encode(v) for k, v in texts.items()}

    def rationale(self, text: str, image_path: str | None, image_text: str | None) -> Rationale:
        """L_t and L_i of one post, each from its planned writer; a part without one is empty, and the
        provenance lists it under ``missing`` (as bundles do)."""
        from lrsa.rationales import RationaleInput, rationalize

        inp = RationaleInput(id="post", text=text, image_path=image_path,
                             image_texts=(image_text,) if image_text else (),
                             image_source="user" if image_text else None)
        plan = self.writer_plan()
        written: dict[str, Rationale] = {}
        calls: list[tuple[Any, tuple[str, ...]]] = []
        for part, x in plan.items():
            if x["backend"] is None:
                continue
            for n, (b, kinds) in enumerate(calls):
                if b is x["backend"]:
                    calls[n] = (b, kinds + (part,))
                    break
            else:
                calls.append((x["backend"], (part,)))
        for b, kinds in calls:
            r = rationalize(inp, b, kinds=kinds)
            for part in kinds:
                written[part] = r
        if len(calls) == 1 and len(calls[0][1]) == len(plan):
            return written[next(iter(plan))]  # one writer wrote every part: its rationale as it is
        prov: dict[str, Any] = {}
        if calls:
            first = written[calls[0][1][0]].provenance
            prov = dict(first) if len(calls) == 1 else {p: written[p].provenance for p in written}
        missing = [p for p in plan if p not in written]
        if missing:
            prov["missing"] = missing
        return Rationale(text=written["text"].text if "text" in written else "",
                         image=written["image"].image if "image" in written else "", provenance=prov)

    def _explain(self, batch: dict[str, Any], decoded: list, items: list, side_texts: dict[str, list[str]]
                 ) -> list[list[dict[str, Any]]]:
        """Attribution of every decoded aspect of ``batch`` (``lrsa.model.attribution.explain``), with the
        rationale words aligned to the side encoder's tokens."""
        from lrsa.model.attribution import explain, side_text

        m = self.run.model
        kinds = [k for k in ("rat_text", "rat_image") if k in side_texts]
        rows: dict[str, list] = {}
        if kinds:
            enc = self.side_encoder if m.side_encoder == "frozen" else None
            tok, limit = (enc.tokenizer, enc.max_tokens) if enc is not None else (self.tokenizer, m.side_max_tokens)
            rows = {k: [side_text(tok, side_texts[k][it.side_index[k]], limit) for it in items] for k in kinds}
        return explain(self.net, batch, decoded, self.tokenizer, rows)

    # ---------------------------------------------------------------- prediction

    def predict_batch(self, posts: list[dict[str, Any]], progress: bool = False,
                      use_rationales: bool = True, batch_size: int = 32, explain: bool = False) -> list[Prediction]:
        out: list[Prediction] = []
        chunks = range(0, len(posts), batch_size)
        if progress:
            from rich.progress import track

            chunks = track(chunks, description="predicting")
        for c in chunks:
            out.extend(self._predict_group(posts[c:c + batch_size], c, use_rationales, explain))
        return out

    def _predict_group(self, group: list[dict[str, Any]], c: int, use_rationales: bool,
                       explain: bool = False) -> list[Prediction]:
        """One batch of posts; ``c``: the index of its first post in the whole call (for error messages);
        ``explain``: each aspect also gets its ``attribution`` (``lrsa.model.attribution``; costs one more
        pass per post and input)."""
        from lrsa.features.text import word_pieces
        from lrsa.features.vision import PixelEncoder, open_image
        from lrsa.model.inputs import aspect_window, collate, encode_aspect, encode_post, owner, word_windows

        m = self.run.model
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        words_l, spans_l, texts = [], [], []
        given_l: list[list[tuple[int, int]]] = []
        aspect_rats: list[list[Rationale | None]] = []
        image_texts: list[str | None] = []
        visuals: list[torch.Tensor | None] = []
        notes: list[list[str]] = []
        for n, post in enumerate(group):
            if not isinstance(post, dict) or not isinstance(post.get("text"), str):
                raise ValueError(f"post {c + n}: needs a string 'text'")
            words, spans = tokenize(post["text"])
            if not words:
                raise ValueError(f"post {c + n}: empty text")
            given = post.get("aspects")
            if m.host == "aspect":
                if not given:
                    raise ValueError(f"post {c + n}: this model classifies given aspects (MASC): give "
                                     "aspects=[...] (surface strings or word spans)")
                given_l.append(resolve_aspects(given, words, f"post {c + n}"))
                aspect_rats.append(aspect_rationales(post.get("aspect_rationales"), len(given_l[-1]),
                                                     f"post {c + n}"))
            elif given is not None:
                raise ValueError(f"post {c + n}: this model extracts the aspects itself (host "
                                 f"{m.host}); given aspects need a MASC checkpoint (host: aspect)")
            words_l.append(words)
            spans_l.append(spans)
            texts.append(post["text"])
            image, itext = post.get("image"), post.get("image_text")
            post_notes: list[str] = []
            if m.image_side == "captions":
                if image is not None:
                    open_image(image)  # a bad image is an error even when its caption is given
                if not itext:
                    post_notes.append(
                        "the photo was not read: this model reads the image as text; give image_text "
                        "(a description of the photo) to use it" if image is not None else
                        NO_IMAGE_NOTE)
            elif m.image_side == "pixels":
                if image is None:
                    visuals.append(None)
                    post_notes.append(NO_IMAGE_NOTE)
                else:
                    if self._pixels is None:
                        self._pixels = PixelEncoder(m.pixel_encoder)
                    visuals.append(self._pixels.encode(image))
            notes.append(post_notes)
            image_texts.append(itext)
        timings["tokenize"] = (time.perf_counter() - t0) * 1000
        # rationales
        rats: list[Rationale | None] = [None] * len(group)
        t0 = time.perf_counter()
        if m.uses_rationales and use_rationales:
            for n, post in enumerate(group):
                img = post.get("image")
                rats[n] = self.rationale(post["text"], str(img) if isinstance(img, (str, Path)) else None,
                                         image_texts[n])
        timings["rationales"] = (time.perf_counter() - t0) * 1000
        t0 = time.perf_counter()
        side_texts: dict[str, list[str]] = {}
        if m.image_side == "captions":
            side_texts["visual"] = [t or "" for t in image_texts]
        # rationale rows: one per post, or one per given aspect (its own rationale, else the post's)
        per_item = [r for n in range(len(group)) for r in
                    ([a or rats[n] for a in aspect_rats[n]] if m.host == "aspect" else [rats[n]])]
        if m.uses_rationales:
            side_texts["rat_text"] = [r.text if r else "" for r in per_item]
            side_texts["rat_image"] = [r.image if r else "" for r in per_item]
        tables = self.side_tables(side_texts) if side_texts else {}
        if not (m.uses_rationales and use_rationales):
            for k in ("rat_text", "rat_image"):
                if k in tables:  # asked to predict without rationales: the rationale side is empty
                    tables[k] = (tables[k][0], torch.zeros_like(tables[k][1]))
        if m.image_side == "pixels":  # a post without a photo: an empty (masked) visual memory
            shape = (PixelEncoder.regions, PixelEncoder.dim)
            v = torch.stack([x if x is not None else torch.zeros(shape) for x in visuals])
            present = torch.tensor([x is not None for x in visuals])
            tables["visual"] = (v, present[:, None].expand(v.shape[:2]).clone())
        # items: one per given aspect (aspect host) or one per word window of a post (joint hosts; a post
        # longer than max_tokens is read in overlapping windows, each span kept from the window in which
        # its first word is most central)
        items, post_of, window_of, offset = [], [], [], []
        windows: list[list[tuple[int, int]]] = []
        for n, post in enumerate(group):
            pid = post.get("id") or f"post-{c + n}"
            pieces = word_pieces(self.tokenizer, words_l[n])  # once per post: windows and encoders share them
            if m.host == "aspect":
                for span in given_l[n]:
                    row = len(items)
                    ws, we = aspect_window(self.tokenizer, words_l[n], span, m.aspect_input, m.max_tokens,
                                           pieces)
                    items.append(encode_aspect(self.tokenizer, f"{pid}@{row}", words_l[n][ws:we],
                                               (span[0] - ws, span[1] - ws), m.aspect_input, m.max_tokens,
                                               side_index={k: (n if k == "visual" else row) for k in tables},
                                               pieces=pieces[ws:we]))
                    post_of.append(n)
                    offset.append(ws)
            else:
                windows.append(word_windows(self.tokenizer, words_l[n], m.max_tokens, pieces))
                for w, (ws, we) in enumerate(windows[n]):
                    items.append(encode_post(self.tokenizer, pid if w == 0 else f"{pid}#{w}",
                                             words_l[n][ws:we], m.max_tokens, side_index={k: n for k in tables},
                                             pieces=pieces[ws:we]))
                    post_of.append(n)
                    window_of.append(w)
                    offset.append(ws)
        batch = collate(items, self.tokenizer.pad_token_id or 0, tables)
        timings["encode_side"] = (time.perf_counter() - t0) * 1000
        t0 = time.perf_counter()
        decoded_items = self.net.decode(batch)
        timings["model"] = (time.perf_counter() - t0) * 1000
        attributions = None
        if explain:
            t0 = time.perf_counter()
            attributions = self._explain(batch, decoded_items, items, side_texts)
            timings["explain"] = (time.perf_counter() - t0) * 1000
        decoded: list[list[tuple[int, int, str, float, Rationale | None, dict | None]]] = [[] for _ in group]
        for row, (n, found) in enumerate(zip(post_of, decoded_items)):
            own = per_item[row] if m.host == "aspect" and aspect_rats[n] else None
            o = offset[row]
            for j, (s, e, pol, conf) in enumerate(found):
                if m.host != "aspect" and owner(windows[n], s + o) != window_of[row]:
                    continue  # this span's first word is better seen by another window
                decoded[n].append((s + o, e + o, pol, conf, own, attributions[row][j] if attributions else None))
        share = {k: round(v / len(group), 3) for k, v in timings.items()}
        out: list[Prediction] = []
        for n, post in enumerate(group):
            aspects = []
            for s, e, pol, conf, own, attribution in decoded[n]:
                cs, ce = spans_l[n][s][0], spans_l[n][e - 1][1]
                aspects.append(PredictedAspect(start=s, end=e, polarity=pol, confidence=min(1.0, conf),
                                               char_start=cs, char_end=ce, text=texts[n][cs:ce],
                                               rationale=own if own is not rats[n] else None,
                                               attribution=attribution))
            used = bool(m.uses_rationales and use_rationales)
            parts = {p: x["part"] for p, x in self.writer_plan().items()} if used else {}
            out.append(Prediction(id=post.get("id"), text=texts[n], words=words_l[n], aspects=aspects,
                                  rationale=rats[n], used_rationales=used, rationale_writers=parts,
                                  notes=notes[n] + [x.note for x in parts.values() if x.note],
                                  timings_ms={**share, "total": round(sum(share.values()), 3)}))
        return out
