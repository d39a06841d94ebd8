"""Stage 2: rationales for each post, L_t (an explanation of the text) and L_i (a description of the image
and its relation to the text), from an LLM (``openai``-compatible endpoint, ``local`` SmolLM2), a lexicon
or imported texts, with a durable cache and committed bundles for the benchmarks.

    from lrsa.rationales import load_bundle
    rats = load_bundle("twitter2015", "lexicon")   # {"train-0": Rationale(text=L_t, image=L_i, ...)}
"""

from lrsa.rationales.backends import BACKENDS, Backend, BackendError, Completion, Request, make_backend
from lrsa.rationales.bundle import available_sources, bundle_path, load_bundle, write_bundle
from lrsa.rationales.cache import RationaleCache
from lrsa.rationales.generate import Report, Result, agenerate, generate, rationalize
from lrsa.rationales.inputs import RationaleInput, dataset_inputs, from_example

__all__ = ["BACKENDS", "Backend", "BackendError", "Completion", "RationaleCache", "RationaleInput",
           "Report", "Request", "Result", "agenerate", "available_sources", "bundle_path", "dataset_inputs",
           "from_example", "generate", "load_bundle", "make_backend", "rationalize", "write_bundle"]
