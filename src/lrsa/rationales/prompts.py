"""Versioned prompt templates and the chat messages built from them.

A template is a text file in ``prompts/`` named ``<task>_<version>.txt`` with a ``### system`` and a
``### user`` section; placeholders use ``string.Template`` syntax (``$text``, ``$image_texts``). The hash of
a template is the sha256 of its bytes (first 12 hex digits); it goes into every cache key and provenance
record, so editing a template invalidates what it produced. Messages are built from a ``RationaleInput``,
which carries no aspects and no labels, so a prompt cannot leak gold annotations.
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
TASKS = ("text", "image", "image_from_texts")


@dataclass(frozen=True)
class PromptTemplate:
    task: str
    version: str
    system: str
    user: str
    hash: str

    @property
    def name(self) -> str:
        return f"{self.task}_{self.version}"

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


@lru_cache(maxsize=64)
def load_template(task: str, version: str = DEFAULT_VERSION) -> PromptTemplate:
    if task not in TASKS:
        raise KeyError(f"unknown prompt task {task!r}; known: {', '.join(TASKS)}")
    raw = _read(f"{task}_{version}.txt")
    sections: dict[str, list[str]] = {}
    current = None
    for line in raw.decode("utf-8").splitlines():
        if line.startswith("### "):
            current = line[4:].strip()
            sections[current] = []
        elif current is not None:
            sections[current].append(line)
    if set(sections) != {"system", "user"}:
        raise ValueError(f"prompt template {task}_{version}.txt needs exactly '### system' and '### user' "
                         f"sections, found {sorted(sections)}")
    return PromptTemplate(task, version, "\n".join(sections["system"]).strip(),
                          "\n".join(sections["user"]).strip(), text_hash(raw))


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
    return tpl.messages(text=inp.text, image_texts=image_texts)


def prompt_hashes(version: str = DEFAULT_VERSION) -> dict[str, str]:
    return {task: load_template(task, version).hash for task in TASKS}
