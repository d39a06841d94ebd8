"""`ModelPredictor`: the `Predictor` the service uses for a trained `lrsa.LRSA` checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lrsa.data.schema import Prediction
from lrsa.serving.predictor import Post


class ModelPredictor:
    """Adapts `LRSA.predict_batch` to the service. Posts that ask for and posts that refuse rationales (or
    that ask for an explanation and those that do not) are run as separate calls (in request order), so one
    flag never leaks into another request, and posts without `explain` keep their speed."""

    def __init__(self, model: Any, source: str | None = None):
        self.model = model
        self.source = source

    @classmethod
    def from_checkpoint(cls, path: str | Path, precision: str | None = None, quantize: str | None = None,
                        side_max_tokens: int | None = None, rationale_backend: str | None = None
                        ) -> "ModelPredictor":
        """``quantize`` / ``side_max_tokens``: the fast-path levers of ``lrsa.model.quantize``;
        ``rationale_backend``: a substitute rationale writer (None: the writers the model was trained with)."""
        from lrsa.api import LRSA

        return cls(LRSA.from_pretrained(path, precision=precision, quantize=quantize,
                                        side_max_tokens=side_max_tokens, rationale_backend=rationale_backend),
                   source=str(path))

    def predict_batch(self, posts: list[Post]) -> list[Prediction]:
        out: list[Prediction | None] = [None] * len(posts)
        for flag, explain in ((True, False), (False, False), (True, True), (False, True)):
            idx = [i for i, p in enumerate(posts)
                   if bool(p["use_rationales"]) is flag and bool(p.get("explain", False)) is explain]
            if not idx:
                continue
            batch = [
                {"id": posts[i]["id"], "text": posts[i]["text"], "image": posts[i]["image"],
                 "image_text": posts[i]["image_text"],
                 **({"aspects": posts[i]["aspects"]} if posts[i].get("aspects") else {})}
                for i in idx
            ]
            preds = self.model.predict_batch(batch, progress=False, use_rationales=flag,
                                             **({"explain": True} if explain else {}))
            if len(preds) != len(idx):
                raise RuntimeError(f"model returned {len(preds)} predictions for {len(idx)} posts")
            for i, p in zip(idx, preds):
                out[i] = p
        return [p for p in out if p is not None]

    def info(self) -> dict[str, Any]:
        info = dict(self.model.info())
        info.pop("path", None)  # never show clients where the server keeps its files
        if self.source is not None:
            info["checkpoint"] = Path(self.source).name
        fast = getattr(self.model, "fast_path", None)
        if fast is not None:
            info["fast_path"] = fast  # lrsa.model.quantize: int8 layers, side-text token budget
        return info
