"""Rationale backends, registered by name: ``openai``, ``local``, ``lexicon``, ``import``.

A backend turns one ``Request`` (a rationale part, "text" = L_t or "image" = L_i, of one input, with the
chat messages built from a versioned prompt) into a ``Completion``. LLM backends are cached by the runner;
``lexicon`` and ``import`` are instant and deterministic, so they are not.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from lrsa.data.schema import DataError
from lrsa.io import iter_jsonl
from lrsa.rationales.inputs import RationaleInput
from lrsa.rationales.prompts import DEFAULT_VERSION, lexicon_phrases, load_template

KINDS = ("text", "image")


@dataclass
class Request:
    kind: str  # "text" (L_t) or "image" (L_i)
    task: str  # prompt task: "text", "image" or "image_from_texts"
    input: RationaleInput
    messages: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Completion:
    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    attempts: int = 1  # HTTP attempts (retries = attempts - 1)


class BackendError(RuntimeError):
    """A request that failed for good (after retries). ``attempts`` says how many were made."""

    def __init__(self, message: str, attempts: int = 1):
        super().__init__(message)
        self.attempts = attempts


class Backend(ABC):
    name: ClassVar[str]
    cacheable: ClassVar[bool] = True  # LLM outputs are cached; instant backends are recomputed
    checked: ClassVar[bool] = True  # apply output checks (strip artefacts, flags)
    model: str = ""
    vision: bool = False  # send the image itself when the input has one
    prompt_version: str = DEFAULT_VERSION

    def settings(self) -> dict[str, Any]:
        """Decoding settings that change outputs (go into cache keys and provenance)."""
        return {}

    def task_for(self, kind: str, inp: RationaleInput) -> str | None:
        """The prompt task of a part, or None when there is nothing to generate it from."""
        from lrsa.rationales.prompts import image_task

        return "text" if kind == "text" else image_task(inp, self.vision)

    def prompt_hash(self, task: str) -> str:
        return load_template(task, self.prompt_version).hash

    def reads_image_texts(self, task: str) -> bool:
        """Whether the prompt of ``task`` reads the image-side texts (they then enter the cache key)."""
        return task != "text" or load_template(task, self.prompt_version).uses_image_texts

    def provenance(self) -> dict[str, Any]:
        from lrsa.rationales.prompts import prompt_hashes

        return {"backend": self.name, "model": self.model, "prompt_version": self.prompt_version,
                "prompt_hashes": prompt_hashes(self.prompt_version), "settings": self.settings(),
                "vision": self.vision}

    @abstractmethod
    async def complete(self, req: Request) -> Completion: ...

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        pass


#: lexicon phrasing used by default: v2 does not restate the image texts in L_i (V holds them)
LEXICON_VERSION = "v2"


class LexiconBackend(Backend):
    """VADER cues and emoji names for L_t; image-side texts (description or captions) for L_i."""

    name = "lexicon"
    cacheable = False
    checked = False

    def __init__(self, prompt_version: str = LEXICON_VERSION, **_: Any):
        from importlib.metadata import version

        self.prompt_version = prompt_version
        self.model = f"vaderSentiment=={version('vaderSentiment')}+emoji=={version('emoji')}"

    def task_for(self, kind: str, inp: RationaleInput) -> str | None:
        if kind == "image" and not inp.image_texts:
            return None
        return kind

    def prompt_hash(self, task: str) -> str:
        return lexicon_phrases(self.prompt_version)[1]

    def reads_image_texts(self, task: str) -> bool:
        return task != "text"

    def provenance(self) -> dict[str, Any]:
        return {"backend": self.name, "model": self.model, "prompt_version": f"lexicon_{self.prompt_version}",
                "prompt_hash": lexicon_phrases(self.prompt_version)[1], "settings": {},
                "description": "L_t: VADER compound, positive/negative lexicon words, negations, emphasis, "
                               "mentions, hashtags (camel case split), emoji names. L_i: words shared by the "
                               "tweet and the image-side text (Twitter-2017: GPT-4 image description; "
                               "otherwise MDCA captions)"
                               + (", then that text." if lexicon_phrases(self.prompt_version)[0].get(
                                   "restate_image_texts", True) else
                                  "; the image-side text itself is not restated (V holds it).")}

    async def complete(self, req: Request) -> Completion:
        from lrsa.rationales.lexicon import describe_image, explain_text

        fn = explain_text if req.kind == "text" else describe_image
        return Completion(fn(req.input, self.prompt_version))


class ImportBackend(Backend):
    """Existing texts as rationales: a user JSONL (``{"id", "text"?, "image"?}`` per line) and/or the
    image-side texts of the input (captions, descriptions) as L_i. Parts with nothing to import stay empty."""

    name = "import"
    cacheable = False
    checked = False

    def __init__(self, file: str | Path | None = None, side_as_image: bool = True, **_: Any):
        self.file = Path(file) if file else None
        self.side_as_image = side_as_image
        self.records: dict[str, dict[str, str]] = read_jsonl(self.file) if self.file else {}
        self.model = f"file:{self.file.name}" if self.file else "side-texts"

    def task_for(self, kind: str, inp: RationaleInput) -> str | None:
        rec = self.records.get(inp.id, {})
        if rec.get(kind):
            return kind
        if kind == "image" and self.side_as_image and inp.image_texts:
            return kind
        return None

    def prompt_hash(self, task: str) -> str:
        return "none"

    def reads_image_texts(self, task: str) -> bool:
        return task != "text"

    def provenance(self) -> dict[str, Any]:
        return {"backend": self.name, "model": self.model, "prompt_version": None, "prompt_hash": None,
                "settings": {"side_as_image": self.side_as_image},
                "description": "L_i: the image-side texts verbatim (GPT-4 description or captions joined); "
                               "L_t: the imported file's 'text' field when given."}

    async def complete(self, req: Request) -> Completion:
        rec = self.records.get(req.input.id, {})
        if rec.get(req.kind):
            return Completion(rec[req.kind])
        return Completion(" ".join(t.strip().rstrip(".") + "." for t in req.input.image_texts))


def read_jsonl(path: Path) -> dict[str, dict[str, str]]:
    """Read rationale JSONL: one ``{"id": str, "text": str?, "image": str?}`` object per line."""
    out: dict[str, dict[str, str]] = {}
    for n, rec in iter_jsonl(path):
        if not isinstance(rec.get("id"), str):
            raise DataError(str(path), f"line {n}", "needs a string field 'id'")
        for k in ("text", "image"):
            if rec.get(k) is not None and not isinstance(rec[k], str):
                raise DataError(str(path), f"line {n}", f"field {k!r} must be a string")
        if rec["id"] in out:
            raise DataError(str(path), f"line {n}", f"duplicate id {rec['id']!r}")
        out[rec["id"]] = {k: rec[k] for k in ("text", "image") if rec.get(k)}
    return out


# name -> "module:Class"; modules are imported on demand (openai needs httpx, local needs torch).
BACKENDS: dict[str, str] = {
    "openai": "lrsa.rationales.openai_backend:OpenAIBackend",
    "local": "lrsa.rationales.local:LocalBackend",
    "lexicon": "lrsa.rationales.backends:LexiconBackend",
    "import": "lrsa.rationales.backends:ImportBackend",
}


def make_backend(name: str, **options: Any) -> Backend:
    try:
        target = BACKENDS[name]
    except KeyError:
        raise KeyError(f"unknown rationale backend {name!r}; known: {', '.join(BACKENDS)}") from None
    module, cls = target.split(":")
    return getattr(importlib.import_module(module), cls)(**options)
