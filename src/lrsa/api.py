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
Rationales (L_t, L_i) come from the rationale stage (``lrsa.rationales``), generated from the text and the
image text, never from labels, by default by the writers the model was trained with (recorded per part in the
checkpoint: ``info()["rationale_writers"]``). A part whose writer cannot run here (a published bundle such as
the MiniGPT-4 descriptions, an LLM endpoint nobody configured) is left empty, and each prediction's
``rationale_writers`` and ``notes`` say so; ``rationale_backend=`` names a substitute writer for both parts.

This module is the public API only: each method is thin. Tokenising posts, building the side texts and
tables, collating and running batches live in ``lrsa.model.posts`` (``PostPredictor``); scoring a benchmark
split lives in ``lrsa.training.evaluate``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import torch

from lrsa.data.schema import Prediction
from lrsa.model.posts import NO_IMAGE_NOTE, PostPredictor, resolve_aspects, tokenize

__all__ = ["LRSA", "NO_IMAGE_NOTE", "resolve_aspects", "tokenize"]


class LRSA:
    """A trained LRSA model (or its text-only / image / concat ablations) ready to predict."""

    def __init__(self, net, tokenizer, meta: dict[str, Any], path: Path | None = None,
                 cache_dir: str | Path | None = None, rationale_backend: Any = None,
                 threads: int | None = None, precision: str | None = None):
        from lrsa.config import RunConfig
        from lrsa.model.lrsa import rationale_writers

        self.run = RunConfig.model_validate(meta["run"])
        #: compute precision of prediction (lrsa.precision); by default the one the model was trained in
        self.precision = precision or self.run.train.precision
        self.net = net.eval().set_precision(self.precision)
        self.tokenizer = tokenizer
        self.meta = meta
        self.path = path
        self.cache_dir = cache_dir
        self.threads = threads
        writers = rationale_writers(meta["run"], meta.get("training") or {})
        if writers is not None:  # an older checkpoint: derived from its rationale source and provenance
            meta.setdefault("training", {})["rationale_writers"] = writers
        self._posts = PostPredictor(self.net, tokenizer, self.run, meta.get("side_encoder"), self.precision,
                                    cache_dir=cache_dir, rationale_backend=rationale_backend,
                                    rationale_writers=writers)

    # ---------------------------------------------------------------- loading / saving

    @classmethod
    def from_pretrained(cls, path: str | Path, *, cache_dir: str | Path | None = None,
                        rationale_backend: Any = None, threads: int | None = None,
                        precision: str | None = None, quantize: str | None = None,
                        side_max_tokens: int | None = None) -> "LRSA":
        """Load a checkpoint directory (``model.safetensors`` + ``config.json`` + ``tokenizer/``).

        ``rationale_backend``: None (the default) writes each rationale part with the writer the model was
        trained with, leaving empty a part whose writer cannot run here; a backend name of ``lrsa.rationales``
        (e.g. ``"lexicon"``, ``"local"``) or a backend object names a substitute writer for both parts.
        ``precision``: ``fp32`` or ``bf16``
        (``lrsa.precision``); by default the precision the checkpoint was trained in. ``quantize`` (``none``,
        ``side``, ``host``, ``all``: int8 dynamic quantization) and ``side_max_tokens`` (a token budget for
        side texts): the serving fast path of ``lrsa.model.quantize``; off by default.
        """
        from lrsa.model.lrsa import load_checkpoint

        p = Path(path)
        if (p / "best" / "config.json").exists():
            p = p / "best"  # a run directory: its dev-best checkpoint
        if threads:
            torch.set_num_threads(threads)
        net, tok, meta = load_checkpoint(p)
        model = cls(net, tok, meta, p, cache_dir=cache_dir, rationale_backend=rationale_backend,
                    threads=threads, precision=precision)
        if (quantize or "none") != "none" or side_max_tokens is not None:
            from lrsa.model.quantize import apply_fast_path

            apply_fast_path(model, quantize, side_max_tokens)
        return model

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
                                         precision=kwargs.get("precision") or run.train.precision,
                                         layers=m.side_layers)
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
        from lrsa.model.lrsa import record_scores

        self.meta = record_scores(path, dev, test)

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
            "rationale_backend": (self._posts.backend_name() if m.uses_rationales else None),
            "rationale_writers": {p: x["part"].model_dump() for p, x in self._posts.writer_plan().items()},
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

    @property
    def rationale_backend(self) -> Any:
        """The substitute writer the user named (a backend name or object), or None: the trained writers."""
        return self._posts.rationale_backend

    @property
    def side_encoder(self):
        """The frozen side encoder the model was trained with (weights checked on first use), or None."""
        return self._posts.side_encoder

    # ---------------------------------------------------------------- prediction

    def predict(self, text: str, image: Any = None, *, image_text: str | None = None,
                aspects: list[Any] | None = None, aspect_rationales: list[Any] | None = None,
                use_rationales: bool = True, explain: bool = False) -> Prediction:
        """One post. ``aspects`` (MASC checkpoints, ``host: aspect``): the given aspects, each a surface string
        (its first occurrence as whole words) or ``{"start", "end"}`` word indices of ``tokenize(text)``;
        ``aspect_rationales``: optionally one rationale per aspect (``Rationale`` or ``{"text", "image"}``),
        e.g. an LLM's reason toward it, else the post's rationale from the backend serves every aspect.
        ``explain``: each aspect also carries its ``attribution`` (what it leaned on among the tweet words, the
        image side, L_t and L_i, by read-out and by removing each input; ``lrsa.model.attribution``). Off by
        default: it scores each post again once per input."""
        post: dict[str, Any] = {"text": text, "image": image, "image_text": image_text}
        if aspects is not None:
            post["aspects"] = aspects
        if aspect_rationales is not None:
            post["aspect_rationales"] = aspect_rationales
        return self.predict_batch([post], use_rationales=use_rationales, explain=explain)[0]

    def predict_batch(self, posts: list[dict[str, Any]], progress: bool = False,
                      use_rationales: bool = True, batch_size: int = 32, explain: bool = False) -> list[Prediction]:
        """Predict many posts: each a dict with ``text`` and optional ``image`` / ``image_text`` / ``id``
        (and ``aspects`` / ``aspect_rationales`` for MASC checkpoints, as in ``predict``); ``explain`` as in
        ``predict``."""
        return self._posts.predict_batch(posts, progress=progress, use_rationales=use_rationales,
                                         batch_size=batch_size, explain=explain)

    # ---------------------------------------------------------------- benchmark evaluation

    def evaluate_split(self, dataset: str, split: str, data_dir: str | Path | None = None,
                       limit: int | None = None, rationale_source: str | None = None,
                       log: Callable[[str], None] | None = None, progress: bool = False,
                       without_image: bool = False) -> dict[str, Any]:
        """Predict a benchmark split with its committed rationales and captions; score it. ``log``: stage
        messages (loading, encoding side texts); ``progress``: progress bars over the prediction batches;
        ``without_image``: every post as if it had no image (V and L_i empty), as text-only posts are read."""
        from lrsa.training.evaluate import evaluate_split

        return evaluate_split(self.net, self.tokenizer, self.run, lambda: self.side_encoder, dataset, split,
                              data_dir=data_dir, limit=limit, rationale_source=rationale_source, log=log,
                              progress=progress, without_image=without_image, cache_dir=self.cache_dir)
