"""lrsa: multimodal aspect-based sentiment analysis with LLM-generated rationales.

    from lrsa import LRSA, load_dataset
    model = LRSA.from_pretrained("path/to/checkpoint")
    result = model.predict("Chuck Bass is everything #MCM", image="photo.jpg")
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lrsa.data import Aspect, Example, load_dataset

__version__ = "0.1.0"
__all__ = ["LRSA", "Aspect", "Example", "load_dataset", "__version__"]

if TYPE_CHECKING:  # pragma: no cover
    from lrsa.api import LRSA


def __getattr__(name: str) -> Any:
    # The model stack imports torch; keep `import lrsa` light until it is needed.
    if name == "LRSA":
        from lrsa.api import LRSA

        return LRSA
    raise AttributeError(name)
