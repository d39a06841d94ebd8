"""The one record every stage speaks: an image-text example and its aspects.

Spans are word-level: ``start`` is the index of the first word, ``end`` is exclusive.
Polarity is always one of ``POS``, ``NEU``, ``NEG``.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, computed_field, model_validator

Polarity = Literal["POS", "NEU", "NEG"]
POLARITIES: tuple[str, ...] = ("POS", "NEU", "NEG")
SPLITS: tuple[str, ...] = ("train", "dev", "test")


class DataError(ValueError):
    """A malformed input record. The message names the file, the record and the reason."""

    def __init__(self, source: str, where: str, reason: str):
        self.source = source
        self.where = where
        self.reason = reason
        super().__init__(f"{source}: {where}: {reason}")


class Aspect(BaseModel):
    """One aspect term: words[start:end] with its sentiment."""

    model_config = ConfigDict(frozen=True)

    start: int = Field(ge=0)
    end: int = Field(ge=1)
    polarity: Polarity

    @model_validator(mode="after")
    def _non_empty(self) -> "Aspect":
        if self.end <= self.start:
            raise ValueError(f"empty span [{self.start}, {self.end})")
        return self

    @property
    def span(self) -> tuple[int, int]:
        return (self.start, self.end)


class Example(BaseModel):
    """One image-text post. ``id`` is ``"<split>-<n>"`` for benchmark data (n = 0-based file order)."""

    id: str
    words: list[str]
    image_id: str | None = None
    image_path: str | None = None
    aspects: list[Aspect] = Field(default_factory=list)
    metadata: dict[str, Any] = Field(default_factory=dict)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def text(self) -> str:
        return " ".join(self.words)

    def surface(self, aspect: Aspect) -> str:
        return " ".join(self.words[aspect.start : aspect.end])


def validate_aspects(words: list[str], aspects: list[Aspect], source: str, where: str) -> None:
    """Raise DataError if a span is out of range or two gold spans overlap."""
    n = len(words)
    spans = sorted(aspects, key=lambda a: (a.start, a.end))
    for a in spans:
        if a.end > n:
            raise DataError(source, where, f"span [{a.start}, {a.end}) out of range for {n} words")
    for a, b in zip(spans, spans[1:]):
        if b.start < a.end:
            raise DataError(
                source, where, f"overlapping spans [{a.start}, {a.end}) and [{b.start}, {b.end})"
            )


# --------------------------------------------------------------------------- predictions


class Rationale(BaseModel):
    """The LLM-written rationales for one post and where they came from."""

    text: str = ""  # L_t: explanation of the tweet text
    image: str = ""  # L_i: description of the image and its relation to the text
    provenance: dict[str, Any] = Field(default_factory=dict)  # backend, model, prompt hash, decoding


class InputEffect(BaseModel):
    """Intervention: the aspect re-scored with one input removed (``lrsa.model.attribution``)."""

    prob: float  # probability of the predicted polarity on the span once the input is removed
    change: float  # before - after: positive = the input supported the decision
    polarity_flip: bool  # another polarity is now the most probable on the span
    span_flip: bool  # decoding no longer yields the span


class SideToken(BaseModel):
    """A word of L_t or L_i that the aspect attended to: its character span in the rationale text."""

    token: str
    start: int
    end: int
    mass: float  # read-out: mean attention of the aspect's words on it
    effect: float | None = None  # intervention: change when it alone is removed (the top few only)


class Attribution(BaseModel):
    """What one aspect's decision drew on (``lrsa.model.attribution``): keys ``text``, ``V``, ``L_t``,
    ``L_i``; an input the model could not see is exactly 0."""

    method: Literal["readout", "intervention"]  # the method ``shares`` shows
    prob: float  # probability of the predicted polarity on the span, all inputs present
    shares: dict[str, float]  # what the aspect leaned on, by ``method`` (sums to 1, or all 0)
    readout: dict[str, float]  # gate openings x attention mass, as shares
    intervention: dict[str, InputEffect]
    tokens: dict[str, list[SideToken]] = Field(default_factory=dict)  # L_t / L_i words that mattered


class PredictedAspect(BaseModel):
    """An aspect the model found: word span, character span in ``Prediction.text``, surface, polarity."""

    start: int
    end: int
    polarity: Polarity
    confidence: float = Field(ge=0.0, le=1.0)
    char_start: int
    char_end: int
    text: str
    # aspect host (given aspects): the rationale this aspect was classified with, when it has its own
    rationale: Rationale | None = None
    attribution: Attribution | None = None  # only when asked for (``explain=True``)


class RationalePart(BaseModel):
    """Who wrote one rationale part of a prediction (key ``text``: L_t, ``image``: L_i) and, when it is empty
    because its writer cannot run here, why (``lrsa.rationales.writers``)."""

    writer: str | None  # who wrote it for this prediction; None: nobody here (the part is empty, masked)
    trained_writer: str | None  # who wrote it in the model's training data
    substitute: bool = False  # a writer the user named in place of the trained one
    note: str | None = None  # why the part is empty, or that a substitute wrote it


class Prediction(BaseModel):
    """What ``LRSA.predict`` returns for one post."""

    id: str | None = None
    text: str
    words: list[str]
    aspects: list[PredictedAspect]
    rationale: Rationale | None = None  # None only when predicting without rationales was asked for
    used_rationales: bool
    # who wrote each rationale part ("text": L_t, "image": L_i); empty when no rationale was read
    rationale_writers: dict[str, RationalePart] = Field(default_factory=dict)
    notes: list[str] = Field(default_factory=list)  # e.g. "no image: predicted from the text alone"
    timings_ms: dict[str, float] = Field(default_factory=dict)


def char_offsets(words: list[str]) -> list[tuple[int, int]]:
    """Character offsets of each word in ``" ".join(words)``."""
    out, pos = [], 0
    for w in words:
        out.append((pos, pos + len(w)))
        pos += len(w) + 1
    return out
