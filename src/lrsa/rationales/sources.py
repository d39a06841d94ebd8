"""Names of the published rationale sources, and who wrote each part of them (a leaf module).

Contract: imports nothing from ``lrsa``; ``bundle`` (generation hints), ``published`` (building the
bundles) and the checkpoints (naming the writers a model was trained with) read these tables, so that
none of them has to import another for a name.

``SOURCES``  the published sources that ``lrsa rationales import-published`` turns into bundles.
``LEVEL``    each one's level: ``tweet`` (an input wherever aspects are found) or ``aspect`` (MASC only).
``WRITERS``  each one's writer of L_t (``text``) and of L_i (``image``): the model that wrote the part,
             or the offline backend of this package that the bundle takes it from (``lexicon``).
"""

from __future__ import annotations

SOURCES = ("arkmsa", "arkmsa-aspect", "gpt4")
LEVEL = {"arkmsa": "tweet", "arkmsa-aspect": "aspect", "gpt4": "tweet"}
WRITERS: dict[str, dict[str, str]] = {
    "arkmsa": {"text": "lexicon", "image": "MiniGPT-4"},
    "arkmsa-aspect": {"text": "MiniGPT-4", "image": "MiniGPT-4"},
    "gpt4": {"text": "lexicon", "image": "GPT-4"},
}
