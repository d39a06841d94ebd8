"""The serving stage: an HTTP service and a web page in front of any `Predictor` (normally `lrsa.LRSA`).

    from lrsa.serving import create_app, ServingConfig
    app = create_app(predictor, ServingConfig())

`lrsa serve --checkpoint DIR` builds the same app around a trained checkpoint and runs it with uvicorn.
"""

from __future__ import annotations

from lrsa.serving.config import BatchingConfig, Limits, ServingConfig
from lrsa.serving.errors import ERROR_CODES, ApiError
from lrsa.serving.predictor import Post, Predictor

__all__ = [
    "ApiError",
    "BatchingConfig",
    "ERROR_CODES",
    "Limits",
    "Post",
    "Predictor",
    "ServingConfig",
    "create_app",
]


def create_app(*args, **kwargs):  # noqa: ANN002, ANN003 - thin lazy re-export (FastAPI import is not free)
    from lrsa.serving.app import create_app as _create_app

    return _create_app(*args, **kwargs)
