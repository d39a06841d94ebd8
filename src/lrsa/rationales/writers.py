"""Who wrote each rationale part a model was trained with, and whether that writer can run here.

Contract: a *writer* is a JSON-able dict naming who wrote one part, L_t (``"text"``) or L_i (``"image"``):
  ``{"kind": "backend", "backend": "lexicon" | "local" | "openai" | "import", "model", "prompt_version",
     ["model_name", "settings", "endpoint"], "name"}``   a backend of this package wrote it;
  ``{"kind": "published", "source": "arkmsa" | "arkmsa-aspect" | "gpt4", "model", "name"}``
                                                         a published bundle (an LLM run by others, e.g. MiniGPT-4);
  ``{"kind": "bundle", "source", "name"}``               a bundle of unknown make (imported, or an old record).
``"name"`` is what predictions show, e.g. ``"MiniGPT-4 (published arkmsa bundle)"``.

``training_writers(source, provenance, dataset)`` derives ``{"text": writer, "image": writer}`` from a run's
rationale source and the provenance of its bundle's records (what checkpoints have always stored), so a
checkpoint written before writers were recorded gets them the same way. ``runnable(writer)`` returns the
backend that reproduces the writer at predict time, or the reason it cannot run here: a published bundle
never can (its LLM is not here), an ``openai`` endpoint is not called unless the user names it, a ``local``
LLM needs llama.cpp (``bash scripts/setup_llama.sh``). Nothing here picks another writer instead: the caller
leaves such a part empty, or uses a substitute the user named.
"""

from __future__ import annotations

from typing import Any

from lrsa.rationales.sources import SOURCES, WRITERS

PARTS = ("text", "image")
PART_NAMES = {"text": "L_t", "image": "L_i"}


def _lexicon(prov: dict[str, Any] | None = None) -> dict[str, Any]:
    from lrsa.rationales.backends import LEXICON_VERSION

    prov = prov or {}
    version = str(prov.get("prompt_version") or f"lexicon_{LEXICON_VERSION}")
    w = {"kind": "backend", "backend": "lexicon", "model": prov.get("model"), "prompt_version": version}
    w["name"] = f"lexicon {version.removeprefix('lexicon_')} (VADER cues; words shared with the image text)"
    return w


def backend_writer(prov: dict[str, Any]) -> dict[str, Any]:
    """The writer recorded by a backend's provenance (``Backend.provenance()`` or a bundle manifest's);
    a ``local`` writer's settings keep its runtime (llama.cpp or transformers)."""
    backend = prov.get("backend")
    if backend == "lexicon":
        return _lexicon(prov)
    w: dict[str, Any] = {"kind": "backend", "backend": backend, "model": prov.get("model"),
                         "prompt_version": prov.get("prompt_version")}
    for k in ("model_name", "settings", "endpoint"):
        if prov.get(k) is not None:
            w[k] = prov[k]
    model = prov.get("model_name") or prov.get("model") or "?"
    where = f" at {prov['endpoint']}" if prov.get("endpoint") else ""
    version = f", prompt {prov['prompt_version']}" if prov.get("prompt_version") else ""
    w["name"] = f"{backend} {model}{where}{version}"
    return w


def published_writer(source: str, model: str) -> dict[str, Any]:
    return {"kind": "published", "source": source, "model": model,
            "name": f"{model} (published {source} bundle)"}


def _lexicon_of_dataset(dataset: str | None, text_field: str | None) -> dict[str, Any]:
    """The lexicon writer of a published bundle's L_t: the committed lexicon bundle's provenance when its
    sha256 is the one the published bundle was built from (``"lexicon bundle sha256 ..."``)."""
    if dataset and text_field and text_field.startswith("lexicon bundle sha256 "):
        from lrsa.rationales.bundle import read_manifest

        entry = read_manifest(dataset).get("sources", {}).get("lexicon") or {}
        if entry.get("sha256") == text_field.split()[-1]:
            return _lexicon(entry.get("provenance"))
    return _lexicon()


def training_writers(source: str, provenance: dict[str, Any] | None,
                     dataset: str | None = None) -> dict[str, dict[str, Any]]:
    """``{"text": writer, "image": writer}`` of a model trained on the bundle ``source`` whose records carry
    ``provenance`` (None: not recorded; then the source's name alone decides)."""
    prov = provenance or {}
    if source in SOURCES:
        out = {}
        for part in PARTS:
            who = WRITERS[source][part]
            out[part] = (_lexicon_of_dataset(dataset, prov.get("text")) if who == "lexicon"
                         else published_writer(source, who))
        return out
    if prov.get("image_from"):  # a composed bundle: L_t written here, L_i linked from another bundle
        text = backend_writer(prov)
        image_src = prov["image_from"]
        image = (training_writers(image_src, None, dataset)["image"] if image_src in SOURCES
                 else {"kind": "bundle", "source": image_src, "model": prov.get("image_model"),
                       "name": f"{prov.get('image_model') or 'unknown writer'} ({image_src} bundle)"})
        return {"text": text, "image": image}
    if prov.get("backend") in ("lexicon", "local", "openai"):
        w = backend_writer(prov)
        return {"text": w, "image": dict(w)}
    if not prov and source == "lexicon":
        return {"text": _lexicon(), "image": _lexicon()}
    w = {"kind": "bundle", "source": source, "model": prov.get("model"),
         "name": f"{prov.get('model') or 'unknown writer'} ({source} bundle)"}
    return {"text": w, "image": dict(w)}


def same_writer(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether two writers write the same texts (kind, backend or source, model, prompt version)."""
    keys = ("kind", "backend", "source", "model", "model_name", "prompt_version")
    return all(a.get(k) == b.get(k) for k in keys)


def runnable(writer: dict[str, Any]) -> tuple[Any | None, str | None]:
    """``(backend, None)`` when ``writer`` can write here, else ``(None, why not)``."""
    from lrsa.rationales.backends import make_backend

    if writer.get("kind") == "published":
        return None, "no such writer here"
    if writer.get("kind") != "backend":
        return None, "a bundle of unknown make: no such writer here"
    backend = writer.get("backend")
    version = writer.get("prompt_version")
    if backend == "lexicon":
        return make_backend("lexicon", prompt_version=str(version or _lexicon()["prompt_version"])
                            .removeprefix("lexicon_")), None
    if backend == "local":
        from lrsa.rationales.llamacpp import EngineError
        from lrsa.rationales.llm_files import ModelFileError

        from lrsa.rationales.llm_files import MODELS

        runtime = "transformers" if "transformers" in str((writer.get("settings") or {}).get("runtime", "")) \
            else "llama.cpp"
        model = writer.get("model_name") or next(  # older records name the model file only
            (m.name for m in MODELS.values() if m.file == str(writer.get("model") or "").split("@")[0]), None)
        if model is None:
            return None, f"its model file {writer.get('model')!r} is not one this package ships: no such writer here"
        opts = {"model": model, "prompt_version": version}
        try:
            return make_backend("local", runtime=runtime, **{k: v for k, v in opts.items() if v}), None
        except (EngineError, ModelFileError) as err:
            return None, f"it cannot run here ({err})"
    if backend == "openai":
        return None, ("an LLM endpoint is not called unless named: give rationale_backend= (Python) or "
                      "--rationales (predict, serve) to use one")
    return None, f"the {backend!r} backend imports texts: no such writer here"


def describe_backend(backend: Any) -> dict[str, Any]:
    """The writer a backend object (or name) is, for a substitute the user named."""
    if isinstance(backend, str):
        from lrsa.rationales.backends import make_backend

        backend = make_backend(backend)
    return backend_writer(backend.provenance())
