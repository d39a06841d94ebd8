"""Versioned prompt templates and the chat messages built from them.

A template is a text file in ``prompts/`` named ``<task>_<version>.txt`` with a ``### system`` and a
``### user`` section; placeholders use ``string.Template`` syntax (``$text``; ``$image_texts``, the image-side
texts one per line; ``$image_summary``, the first three on one line). The hash of a template is the sha256 of its bytes (first 12 hex digits); it goes into every cache key and provenance
record, so editing a template invalidates what it produced. Messages are built from a ``RationaleInput``,
which carries no aspects and no labels, so a prompt cannot leak gold annotations.

A version names a set of templates: ``v2`` holds a new tweet-level L_t prompt (who or what the post is about
and the author's attitude to each, with the image-side texts as context) and no new image prompts, so a task
without a file at the requested version uses its newest earlier one (the template's own name and hash are
what provenance records). ``PromptTemplate.uses_image_texts`` tells whether a text prompt reads the image-side
texts, so that they enter its cache key.

A template may add a ``### settings`` section of ``key: value`` lines; being part of the file, the settings are
covered by its hash. ``image_words: N`` caps ``$image_summary`` at N words, cut after the last sentence end
within the cap when one lies in its second half, else after the N-th word with an ellipsis. ``v3`` is ``v2``
with ``image_words: 40``: the long GPT-4 descriptions of Twitter-2017 make the prompt prefill the bottleneck
of the local writer on 2 cores (docs/rationales.md, "Speed levers").
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from string import Template
from typing import Any

from lrsa.rationales.inputs import RationaleInput

DEFAULT_VERSION = "v1"
SUMMARY_TEXTS = 3  # image-side texts in ``$image_summary``
TASKS = ("text", "image", "image_from_texts")
SETTINGS = {"image_words": int}  # what a ``### settings`` section may set


@dataclass(frozen=True)
class PromptTemplate:
    task: str
    version: str
    system: str
    user: str
    hash: str
    image_words: int | None = None  # cap on ``$image_summary`` (``### settings``), None: uncapped

    @property
    def name(self) -> str:
        return f"{self.task}_{self.version}"

    @property
    def uses_image_texts(self) -> bool:
        return any(k in self.system + self.user for k in ("$image_texts", "$image_summary"))

    def messages(self, **values: str) -> list[dict[str, Any]]:
        return [
            {"role": "system", "content": Template(self.system).substitute(values)},
            {"role": "user", "content": Template(self.user).substitute(values)},
        ]


def _read(name: str) -> bytes:
    path = resources.files("lrsa.rationales").joinpath("prompts").joinpath(name)
    if not path.is_file():
        raise FileNotFoundError(f"prompt template {name!r} not found in lrsa/rationales/prompts/")
    return path.read_bytes()


def text_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:12]


def _exists(name: str) -> bool:
    return resources.files("lrsa.rationales").joinpath("prompts").joinpath(name).is_file()


def versions() -> list[str]:
    """Prompt versions that exist: those with at least one template file."""
    folder = resources.files("lrsa.rationales").joinpath("prompts")
    found = {p.name.rsplit("_", 1)[1][:-4] for p in folder.iterdir()
             if p.name.endswith(".txt") and p.name.rsplit("_", 1)[0] in TASKS}
    return sorted(found, key=lambda v: int(v[1:]))


def resolve_version(task: str, version: str) -> str:
    """The newest template version of ``task`` that is not newer than ``version`` (``v2`` -> ``v1`` when
    the task has no ``v2`` file); a version with no template at all raises, naming the file looked for."""
    if version not in versions():
        raise FileNotFoundError(f"prompt template {task}_{version}.txt not found in lrsa/rationales/prompts/ "
                                f"(prompt versions: {', '.join(versions())})")
    for n in range(int(version[1:]), 0, -1):
        if _exists(f"{task}_v{n}.txt"):
            return f"v{n}"
    raise FileNotFoundError(f"no prompt template for task {task!r} at version {version} or earlier "
                            f"in lrsa/rationales/prompts/")


@lru_cache(maxsize=64)
def load_template(task: str, version: str = DEFAULT_VERSION) -> PromptTemplate:
    if task not in TASKS:
        raise KeyError(f"unknown prompt task {task!r}; known: {', '.join(TASKS)}")
    version = resolve_version(task, version)
    raw = _read(f"{task}_{version}.txt")
    sections: dict[str, list[str]] = {}
    current = None
    for line in raw.decode("utf-8").splitlines():
        if line.startswith("### "):
            current = line[4:].strip()
            sections[current] = []
        elif current is not None:
            sections[current].append(line)
    name = f"{task}_{version}.txt"
    if set(sections) - {"settings"} != {"system", "user"}:
        raise ValueError(f"prompt template {name} needs exactly '### system' and '### user' sections "
                         f"(and optionally '### settings'), found {sorted(sections)}")
    settings = _settings(name, sections.get("settings", []))
    return PromptTemplate(task, version, "\n".join(sections["system"]).strip(),
                          "\n".join(sections["user"]).strip(), text_hash(raw), **settings)


def _settings(name: str, lines: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for line in filter(str.strip, lines):
        key, sep, value = (part.strip() for part in line.partition(":"))
        if not sep or key not in SETTINGS:
            raise ValueError(f"prompt template {name}: bad settings line {line!r} "
                             f"(expected 'key: value' with key in {', '.join(SETTINGS)})")
        try:
            out[key] = SETTINGS[key](value)
        except ValueError:
            raise ValueError(f"prompt template {name}: {key} must be {SETTINGS[key].__name__}, "
                             f"got {value!r}") from None
    return out


def cap_words(text: str, limit: int | None) -> str:
    """``text`` cut to at most ``limit`` words: after the last sentence end within the cap when it lies in the
    cap's second half, else after the ``limit``-th word followed by an ellipsis; unchanged when it fits."""
    words = text.split()
    if limit is None or len(words) <= limit:
        return text
    kept = words[:limit]
    for i in range(limit - 1, limit // 2 - 1, -1):
        if kept[i].endswith((".", "!", "?")):
            return " ".join(kept[:i + 1])
    return " ".join(kept) + " …"


@lru_cache(maxsize=8)
def lexicon_phrases(version: str = DEFAULT_VERSION) -> tuple[dict[str, Any], str]:
    """The phrasing of the lexicon backend and its hash."""
    raw = _read(f"lexicon_{version}.json")
    return json.loads(raw), text_hash(raw)


def image_task(inp: RationaleInput, send_image: bool) -> str | None:
    """Which image prompt applies: the image itself, its side texts, or none (no image information)."""
    if send_image and inp.image_path:
        return "image"
    if inp.image_texts:
        return "image_from_texts"
    return None


def build_messages(task: str, inp: RationaleInput, version: str = DEFAULT_VERSION) -> list[dict[str, Any]]:
    """Chat messages for one task of one input (without the image attachment, which the backend adds)."""
    tpl = load_template(task, version)
    image_texts = "\n".join(f"- {t}" for t in inp.image_texts)
    # the first SUMMARY_TEXTS image-side texts on one line: enough context for a text prompt, short to prefill
    summary = cap_words("; ".join(inp.image_texts[:SUMMARY_TEXTS]), tpl.image_words) or "no description"
    return tpl.messages(text=inp.text, image_texts=image_texts, image_summary=summary)


def prompt_hashes(version: str = DEFAULT_VERSION) -> dict[str, str]:
    """Template name -> hash for every task at ``version`` (``{"text_v2": ..., "image_v1": ...}``)."""
    return {load_template(task, version).name: load_template(task, version).hash for task in TASKS}
