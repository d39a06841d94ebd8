"""What the service needs from a model: a batch predict and a description of itself.

`lrsa.LRSA` satisfies this through `ModelPredictor`; tests may plug in anything with the same two methods.
"""

from __future__ import annotations

from typing import Any, NotRequired, Protocol, TypedDict, runtime_checkable

from PIL import Image

from lrsa.data.schema import Prediction


class Post(TypedDict):
    """One post as the service hands it to a predictor. The image is already decoded (RGB) or None."""

    id: str | None
    text: str
    image: Image.Image | None
    image_text: str | None  # a caption / description of the image (models that read the image as text)
    use_rationales: bool
    aspects: NotRequired[list[dict[str, int]] | None]  # given aspects as word spans (MASC models)
    explain: NotRequired[bool]  # each aspect's attribution (slower; off when absent)


@runtime_checkable
class Predictor(Protocol):
    def predict_batch(self, posts: list[Post]) -> list[Prediction]:
        """One Prediction per post, in order. Called from a single inference thread, never concurrently."""
        ...

    def info(self) -> dict[str, Any]:
        """JSON-serialisable description: backbone, training data, scores, rationale backend, ...
        If it has ``image_side``: ``"captions"`` makes ``image_text`` required, ``"pixels"`` makes ``image``
        required (checked by the service before the post reaches the model)."""
        ...
