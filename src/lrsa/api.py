"""The public API.

    from lrsa import LRSA
    model = LRSA.from_pretrained("runs/twitter2015/best")
    pred = model.predict("Chuck Bass is everything # MCM", image_text="a man in a blue suit")
    for a in pred.aspects:
        print(a.text, a.polarity, a.confidence)

What happens to the image depends on how the model was trained (``model.info()["image_side"]``):
- ``captions`` (image as text): the model reads a caption / description of the image, given as
  ``image_text``. A photo given with ``image_text`` is opened and checked, and ``image_text`` is what the
  model reads; a photo given without it cannot be read (no captioner ships offline): the post is predicted
  from its text and the prediction's ``notes`` say that the photo was not read.
- ``pixels``: the photo goes through EfficientNet-Lite0 (49 region tokens of 1280 dims).
A post without an image (or without the image text a captions model reads) is predicted from its text with
an empty, masked visual memory, and ``notes`` says so; models trained with ``train.modality_dropout`` have
seen such posts in training.
- ``none`` (text-only models): the image is not used.
Rationales (L_t, L_i) come from the rationale stage (``lrsa.rationales``; the offline ``lexicon`` backend
by default), generated from the text and the image text, never from labels.
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path
from typing import Any, Callable

import torch

from lrsa.data.schema import PredictedAspect, Prediction, Rationale

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


def _aspect_rationales(given: list[Any] | None, n: int, where: str) -> list[Rationale | None]:
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


class LRSA:
    """A trained LRSA model (or its text-only / image / concat ablations) ready to predict."""

    def __init__(self, net, tokenizer, meta: dict[str, Any], path: Path | None = None,
                 cache_dir: str | Path | None = None, rationale_backend: Any = "lexicon",
                 threads: int | None = None, precision: str | None = None):
        from lrsa.config import RunConfig

        self.run = RunConfig.model_validate(meta["run"])
        #: compute precision of prediction (lrsa.precision); by default the one the model was trained in
        self.precision = precision or self.run.train.precision
        self.net = net.eval().set_precision(self.precision)
        self.tokenizer = tokenizer
        self.meta = meta
        self.path = path
        self.cache_dir = cache_dir
        self._rationale_backend = rationale_backend
        self._backend_obj = None
        self._side_encoder = None
        self._pixels = None
        self.threads = threads

    # ---------------------------------------------------------------- loading / saving

    @classmethod
    def from_pretrained(cls, path: str | Path, *, cache_dir: str | Path | None = None,
                        rationale_backend: Any = "lexicon", threads: int | None = None,
                        precision: str | None = None) -> "LRSA":
        """Load a checkpoint directory (``model.safetensors`` + ``config.json`` + ``tokenizer/``).

        ``rationale_backend``: a backend name of ``lrsa.rationales`` (``"lexicon"`` by default, offline)
        or a backend object, used when the model reads rationales. ``precision``: ``fp32`` or ``bf16``
        (``lrsa.precision``); by default the precision the checkpoint was trained in.
        """
        from lrsa.model.lrsa import load_checkpoint

        p = Path(path)
        if (p / "best" / "config.json").exists():
            p = p / "best"  # a run directory: its dev-best checkpoint
        if threads:
            torch.set_num_threads(threads)
        net, tok, meta = load_checkpoint(p)
        return cls(net, tok, meta, p, cache_dir=cache_dir, rationale_backend=rationale_backend,
                   threads=threads, precision=precision)

    @classmethod
    def build(cls, run: Any, **kwargs: Any) -> "LRSA":
        """An untrained model from a ``RunConfig`` (pretrained backbone, fresh fusion and host)."""
        from lrsa.features.side_cache import FrozenTextEncoder
        from lrsa.features.text import load_tokenizer, resolve_backbone
        from lrsa.model.lrsa import LRSANet
        from lrsa.model.lrsa import checkpoint_meta

        m = run.model
        path = resolve_backbone(m.backbone)
        side = None
        side_dim = 1
        if (m.uses_rationales or m.image_side == "captions"):
            if m.side_encoder == "frozen":
                side = FrozenTextEncoder(m.side_backbone or m.backbone, m.side_max_tokens,
                                         precision=kwargs.get("precision") or run.train.precision)
                side_dim = side.hidden_size
            else:
                from transformers import AutoConfig

                side_dim = int(AutoConfig.from_pretrained(path).hidden_size)
        net = LRSANet(m, path, side_dim=side_dim)
        meta = {"format": "lrsa-checkpoint", **checkpoint_meta(run, side, side_dim, None)}
        return cls(net, load_tokenizer(path), meta, None, **kwargs)

    def save_pretrained(self, path: str | Path) -> Path:
        from lrsa.model.lrsa import save_checkpoint

        meta = {k: v for k, v in self.meta.items() if k not in ("format", "format_version")}
        return save_checkpoint(self.net, self.tokenizer, meta, path)

    def record_scores(self, path: str | Path, dev: dict | None, test: dict | None) -> None:
        """Add final dev/test scores to a checkpoint's config.json (atomic rewrite)."""
        cfg = Path(path) / "config.json"
        meta = json.loads(cfg.read_text())
        meta["training"]["dev"] = dev
        meta["training"]["test"] = test
        tmp = cfg.with_name(".config.json.part")
        tmp.write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
        os.replace(tmp, cfg)
        self.meta = meta

    def info(self) -> dict[str, Any]:
        m, t = self.run.model, self.meta.get("training", {})
        n_params = sum(p.numel() for p in self.net.parameters())

        def brief(s):
            if not s:
                return None
            return {"jmasa_f1": s["jmasa"]["f1"], "jmasa_p": s["jmasa"]["p"], "jmasa_r": s["jmasa"]["r"],
                    "mate_f1": s["mate"]["f1"], "masc": s.get("masc")}

        return {
            "path": str(self.path) if self.path else None,
            "backbone": m.backbone, "host": m.host, "fusion": m.fusion, "image_side": m.image_side,
            "image_text_source": t.get("image_text_source"),
            "variant": self.variant, "parameters": n_params,
            "training_data": t.get("dataset"), "best_epoch": t.get("best_epoch"),
            "dev": brief(t.get("dev")), "test": brief(t.get("test")),
            "rationale_backend": (self._backend_name() if m.uses_rationales else None),
            "training_rationales": t.get("rationale_provenance"),
            "side_encoder": self.meta.get("side_encoder"), "precision": self.precision,
        }

    @property
    def variant(self) -> str:
        from lrsa.config import VARIANTS

        m = self.run.model
        for name, v in VARIANTS.items():
            if v["fusion"] == m.fusion and v["image"] == m.uses_image:
                return name
        return f"{m.fusion}+{m.image_side}"

    # ---------------------------------------------------------------- side inputs

    def _backend_name(self) -> str:
        b = self._rationale_backend
        return b if isinstance(b, str) else getattr(b, "name", type(b).__name__)

    def _backend(self):
        if self._backend_obj is None:
            from lrsa.rationales import make_backend

            b = self._rationale_backend
            self._backend_obj = make_backend(b) if isinstance(b, str) else b
        return self._backend_obj

    @property
    def side_encoder(self):
        if self._side_encoder is None:
            from lrsa.features.side_cache import FrozenTextEncoder, weights_fingerprint

            se = self.meta.get("side_encoder")
            if not se:
                return None
            enc = FrozenTextEncoder(se["backbone"], se["max_tokens"], cache_dir=self.cache_dir,
                                    precision=self.precision)
            got = weights_fingerprint(enc.path)
            if got != se["fingerprint"]:
                raise RuntimeError(f"side encoder {se['backbone']!r} at {enc.path} has weights {got[:12]}..., "
                                   f"but this model was trained with {se['fingerprint'][:12]}...")
            self._side_encoder = enc
        return self._side_encoder

    def _side_tables(self, texts: dict[str, list[str]]) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        if self.run.model.side_encoder == "shared":
            from lrsa.training.data import token_table

            return {k: token_table(self.tokenizer, v, self.run.model.side_max_tokens) for k, v in texts.items()}
        return {k: self.side_encoder.encode(v) for k, v in texts.items()}

    def _rationale(self, text: str, image_path: str | None, image_text: str | None) -> Rationale:
        from lrsa.rationales import RationaleInput, rationalize

        inp = RationaleInput(id="post", text=text, image_path=image_path,
                             image_texts=(image_text,) if image_text else (),
                             image_source="user" if image_text else None)
        return rationalize(inp, self._backend())

    # ---------------------------------------------------------------- prediction

    def predict(self, text: str, image: Any = None, *, image_text: str | None = None,
                aspects: list[Any] | None = None, aspect_rationales: list[Any] | None = None,
                use_rationales: bool = True) -> Prediction:
        """One post. ``aspects`` (MASC checkpoints, ``host: aspect``): the given aspects, each a surface string
        (its first occurrence as whole words) or ``{"start", "end"}`` word indices of ``tokenize(text)``;
        ``aspect_rationales``: optionally one rationale per aspect (``Rationale`` or ``{"text", "image"}``),
        e.g. an LLM's reason toward it, else the post's rationale from the backend serves every aspect."""
        post: dict[str, Any] = {"text": text, "image": image, "image_text": image_text}
        if aspects is not None:
            post["aspects"] = aspects
        if aspect_rationales is not None:
            post["aspect_rationales"] = aspect_rationales
        return self.predict_batch([post], use_rationales=use_rationales)[0]

    def predict_batch(self, posts: list[dict[str, Any]], progress: bool = False,
                      use_rationales: bool = True, batch_size: int = 32) -> list[Prediction]:
        """Predict many posts: each a dict with ``text`` and optional ``image`` / ``image_text`` / ``id``
        (and ``aspects`` / ``aspect_rationales`` for MASC checkpoints, as in ``predict``)."""
        from lrsa.features.vision import PixelEncoder, open_image
        from lrsa.features.text import word_pieces
        from lrsa.model.inputs import aspect_window, collate, encode_aspect, encode_post, owner, word_windows

        m = self.run.model
        out: list[Prediction] = []
        chunks = range(0, len(posts), batch_size)
        if progress:
            from rich.progress import track

            chunks = track(chunks, description="predicting")
        for c in chunks:
            group = posts[c:c + batch_size]
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
                    aspect_rats.append(_aspect_rationales(post.get("aspect_rationales"), len(given_l[-1]),
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
                    rats[n] = self._rationale(post["text"], str(img) if isinstance(img, (str, Path)) else None,
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
            tables = self._side_tables(side_texts) if side_texts else {}
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
            decoded: list[list[tuple[int, int, str, float, Rationale | None]]] = [[] for _ in group]
            for row, (n, found) in enumerate(zip(post_of, decoded_items)):
                own = per_item[row] if m.host == "aspect" and aspect_rats[n] else None
                o = offset[row]
                for s, e, pol, conf in found:
                    if m.host != "aspect" and owner(windows[n], s + o) != window_of[row]:
                        continue  # this span's first word is better seen by another window
                    decoded[n].append((s + o, e + o, pol, conf, own))
            share = {k: round(v / len(group), 3) for k, v in timings.items()}
            for n, post in enumerate(group):
                aspects = []
                for s, e, pol, conf, own in decoded[n]:
                    cs, ce = spans_l[n][s][0], spans_l[n][e - 1][1]
                    aspects.append(PredictedAspect(start=s, end=e, polarity=pol, confidence=min(1.0, conf),
                                                   char_start=cs, char_end=ce, text=texts[n][cs:ce],
                                                   rationale=own if own is not rats[n] else None))
                used = bool(m.uses_rationales and use_rationales)
                out.append(Prediction(id=post.get("id"), text=texts[n], words=words_l[n], aspects=aspects,
                                      rationale=rats[n], used_rationales=used, notes=notes[n],
                                      timings_ms={**share, "total": round(sum(share.values()), 3)}))
        return out

    # ---------------------------------------------------------------- benchmark evaluation

    def evaluate_split(self, dataset: str, split: str, data_dir: str | Path | None = None,
                       limit: int | None = None, rationale_source: str | None = None,
                       log: Callable[[str], None] | None = None, progress: bool = False,
                       without_image: bool = False) -> dict[str, Any]:
        """Predict a benchmark split with its committed rationales and captions; score it. ``log``: stage
        messages (loading, encoding side texts); ``progress``: progress bars over the prediction batches;
        ``without_image``: every post as if it had no image (V and L_i empty), as text-only posts are read."""
        from lrsa.training.data import load_split
        from lrsa.training.evaluate import masc_split, predict_split, score_split
        from lrsa.training.metrics import score

        run = self.run.model_copy(update={"train": self.run.train.model_copy(update={
            "dataset": dataset, "rationale_source": rationale_source or self.run.train.rationale_source})})
        from lrsa.training.data import load_rationales

        say = log or (lambda m: None)
        say(f"loading {dataset} {split}" + (f" ({run.train.rationale_source} rationales)"
                                            if run.model.uses_rationales else "")
            + "; side texts are encoded once (cached states are reused)")
        t0 = time.perf_counter()
        rationales = load_rationales(run)
        sp = load_split(run, split, self.tokenizer, self.side_encoder if run.model.side_encoder == "frozen"
                        else None, data_dir, rationales, limit, self.cache_dir)
        say(f"{len(sp.examples)} sentences ready in {time.perf_counter() - t0:.1f}s")
        if without_image:  # the modality-dropout mechanism, applied to every row of the split
            from lrsa.model.inputs import drop_image_side

            drop_image_side({"side": sp.side})
        pad = self.tokenizer.pad_token_id or 0
        t0 = time.perf_counter()
        pred = predict_split(self.net, sp, pad, progress="predicting" if progress else None)
        seconds = time.perf_counter() - t0
        scores = score_split(sp, pred)
        if run.model.task == "jmasa":  # MASC of a joint host: forced onto the gold spans
            scores["masc_forced"] = score(sp.examples, masc_split(
                self.net, sp, pad, progress="sentiment on gold spans" if progress else None))["masc"]
            scores["masc"] = scores["masc_forced"]
        scores["predict_seconds"] = round(seconds, 2)
        scores["examples_per_s"] = round(len(sp.examples) / seconds, 2)
        return {"predictions": pred, "scores": scores, "examples": sp.examples}


