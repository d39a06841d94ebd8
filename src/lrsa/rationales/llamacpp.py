"""Batched greedy generation with llama.cpp (``llama-cpp-python``'s C API), in process, on the CPU.

``LlamaCppEngine(path, n_parallel=P, threads=T)`` loads one GGUF model and keeps P sequence slots plus one
sequence for the prompts' shared prefix, each in its own KV stream of ``ctx_per_seq`` cells (``kv_unified=False``,
the default: a step's attention reads only each sequence's own cells; copying the prefix into a slot copies the
stream). ``kv_unified=True`` keeps all of them in one cache of ``P * ctx_per_seq`` cells where the slots share the
prefix's cells; it gives the same texts up to batching noise and measured 14% slower on 2 cores (0.60 vs 0.70
posts/s on Twitter-2017 dev, ``benchmarks/bench_local_llm.py --levers``).
``generate(prompts, max_new_tokens)`` runs continuous batching: the common prefix of the prompts (the system
message) is decoded once and copied into each slot; every ``llama_decode`` call then carries one new token of
each active sequence plus the rest of the prompt of any sequence that starts in a freed slot, so P posts
advance together (the weights are read once per step). Decoding is greedy with a CTRL-style repetition
penalty over the generated tokens (batched results can differ from one-at-a-time ones in the last digits of
the logits, hence now and then in a token);
a sequence ends at an end-of-generation token or after ``max_new_tokens``.

Why not ``llama_cpp.Llama`` or ``python -m llama_cpp.server`` (driven by the ``openai`` backend): both decode
one sequence at a time (the server holds one lock around its model), so their throughput is that of the
``n_parallel=1`` row of the benchmark, a third of the batched one on 2 cores. ``stats`` counts prompt and generated
tokens and the seconds spent in steps that carry a prompt (prefill) or only new tokens (decode); measured in
``benchmarks/bench_local_llm.py`` (``results/rationales/local_llm.json``).

Prompts are rendered with the chat template stored in the GGUF file (Jinja, sandboxed). A prompt that does
not fit its slot (``ctx_per_seq - max_new_tokens`` tokens) raises ``PromptTooLong`` naming its index. A build
compiled for instruction sets this CPU lacks (``scripts/setup_llama.sh`` builds for the CPU it runs on; a venv or
wheel carried to another machine may not match) raises ``EngineError`` naming them before any decode, instead of
dying with SIGILL at the first token. llama-cpp-python is not installed by ``scripts/setup.sh`` (the main job runs
no LLM): where it is missing, ``require_llama_cpp`` raises ``EngineError`` naming the command that builds it
(``bash scripts/setup_llama.sh``); nothing builds it behind the user's back.
"""

from __future__ import annotations

import ctypes
import os
import time
from collections import deque
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from lrsa.env import cpu_flags


class EngineError(RuntimeError):
    """llama.cpp is missing or failed (load, decode)."""


class PromptTooLong(EngineError):
    def __init__(self, index: int, n_tokens: int, limit: int):
        super().__init__(f"prompt {index} has {n_tokens} tokens; a slot holds {limit} prompt tokens "
                         f"(raise ctx_per_seq or shorten the input)")
        self.index = index


# llama.cpp's compile-time CPU features (``llama_print_system_info``) -> the Linux /proc/cpuinfo flag each needs
CPU_FEATURE_FLAGS = {"SSE3": "pni", "SSSE3": "ssse3", "AVX": "avx", "AVX_VNNI": "avx_vnni", "AVX2": "avx2",
                     "F16C": "f16c", "FMA": "fma", "BMI2": "bmi2", "AVX512": "avx512f", "AVX512_VBMI": "avx512_vbmi",
                     "AVX512_VNNI": "avx512_vnni", "AVX512_BF16": "avx512_bf16", "AMX_INT8": "amx_int8"}


SETUP_COMMAND = "bash scripts/setup_llama.sh"
_MISSING = ("llama-cpp-python is not installed: the local LLM writer's llama.cpp runtime needs it, and "
            "scripts/setup.sh leaves it out (the main job runs no LLM). Build it for this CPU's instruction sets "
            f"with `{SETUP_COMMAND}` (in the source checkout; about 5-7 minutes on 2 cores, once per CPU), or use "
            "the local writer with --runtime transformers")


def require_llama_cpp() -> None:
    """Raise ``EngineError`` naming the command that builds llama-cpp-python when it is not installed (checked
    without importing it: cheap enough for a backend's constructor, before any long run starts)."""
    import importlib.util

    if importlib.util.find_spec("llama_cpp") is None:
        raise EngineError(_MISSING)


def import_llama_cpp() -> Any:
    try:
        import llama_cpp
    except ImportError as err:
        raise EngineError(f"{_MISSING} ({type(err).__name__}: {err})") from None
    return llama_cpp


def missing_cpu_features(system_info: str, cpu_flags: set[str] | None) -> list[str]:
    """The instruction sets llama.cpp was compiled for (``"AVX2 = 1"`` in ``system_info``) that this CPU lacks;
    empty when the CPU's flags are unknown (``cpu_flags`` None: not Linux/x86) or all are present."""
    if cpu_flags is None:
        return []
    built = [part.split("=")[0].strip() for part in system_info.replace("CPU :", "|").split("|")
             if part.strip().endswith("= 1")]
    return [f for f in built if f in CPU_FEATURE_FLAGS and CPU_FEATURE_FLAGS[f] not in cpu_flags]


def check_cpu_features(lc: Any) -> None:
    """Raise before the first decode when llama.cpp was compiled for instructions this CPU lacks (a build made on
    another machine, or with hand-set flags): otherwise the process dies with SIGILL at the first token."""
    info = lc.llama_print_system_info().decode(errors="replace")
    missing = missing_cpu_features(info, cpu_flags())
    if missing:
        raise EngineError(
            f"llama-cpp-python was compiled for {', '.join(missing)}, which this CPU does not have "
            f"(it would die with 'Illegal instruction'); rebuild it for this CPU: rm -f .venv/.llama-build && "
            f"{SETUP_COMMAND} (llama.cpp reports: {info.strip()})")


@dataclass
class Generation:
    text: str
    prompt_tokens: int
    completion_tokens: int


@dataclass
class _Slot:
    index: int  # which prompt
    prompt: list[int]
    pos: int = 0
    out: list[int] = field(default_factory=list)
    pending: list[int] = field(default_factory=list)  # tokens to feed in the next decode


class LlamaCppEngine:
    def __init__(self, path: str | Path, n_parallel: int = 8, ctx_per_seq: int = 1024,
                 threads: int | None = None, repetition_penalty: float = 1.1,
                 flash_attn: bool | None = None, kv_unified: bool = False, n_ubatch: int = 512,
                 verbose: bool = False):
        self.llama = import_llama_cpp()
        lc = self.llama
        check_cpu_features(lc)
        self.path = Path(path)
        if not self.path.is_file():
            raise EngineError(f"GGUF model file {self.path} not found")
        self.n_parallel = max(1, int(n_parallel))
        self.ctx_per_seq = int(ctx_per_seq)
        self.threads = int(threads or os.cpu_count() or 1)
        self.repetition_penalty = float(repetition_penalty)
        if not verbose:
            lc.llama_log_set(_quiet_logger(), ctypes.c_void_p())
        lc.llama_backend_init()
        mparams = lc.llama_model_default_params()
        mparams.n_gpu_layers = 0
        self.model = lc.llama_model_load_from_file(str(self.path).encode("utf-8"), mparams)
        if not self.model:
            raise EngineError(f"llama.cpp could not load {self.path}")
        self.vocab = lc.llama_model_get_vocab(self.model)
        self.n_vocab = lc.llama_vocab_n_tokens(self.vocab)
        cparams = lc.llama_context_default_params()
        self.kv_unified = bool(kv_unified)
        # split streams: n_ctx is divided evenly among the n_seq_max streams, the prefix's one included
        cparams.n_ctx = (self.n_parallel + (0 if self.kv_unified else 1)) * self.ctx_per_seq
        cparams.n_batch = cparams.n_ctx  # a decode may carry several whole prompts
        cparams.n_ubatch = min(int(n_ubatch), cparams.n_ctx)
        cparams.n_seq_max = self.n_parallel + 1  # the last one holds the shared prompt prefix
        cparams.kv_unified = self.kv_unified
        cparams.flash_attn_type = -1 if flash_attn is None else int(bool(flash_attn))
        cparams.n_threads = self.threads
        cparams.n_threads_batch = self.threads
        self.ctx = lc.llama_init_from_model(self.model, cparams)
        if not self.ctx:
            raise EngineError(f"llama.cpp could not create a context for {self.path} (n_ctx {cparams.n_ctx})")
        self.memory = lc.llama_get_memory(self.ctx)
        self.batch = lc.llama_batch_init(cparams.n_batch, 0, 1)
        self._template = self._chat_template()
        self.stats = {"prompt_tokens": 0, "completion_tokens": 0, "prefill_s": 0.0, "decode_s": 0.0, "steps": 0}

    # -- prompts -------------------------------------------------------------------------------------------
    def _chat_template(self) -> Any:
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        raw = self.llama.llama_model_chat_template(self.model, None)
        if not raw:
            raise EngineError(f"{self.path.name} has no chat template")
        eos = self._piece(self.llama.llama_vocab_eos(self.vocab))
        bos_id = self.llama.llama_vocab_bos(self.vocab)
        bos = self._piece(bos_id) if bos_id >= 0 else ""
        return Jinja2ChatFormatter(template=raw.decode("utf-8"), eos_token=eos, bos_token=bos,
                                   add_generation_prompt=True)

    def _piece(self, token: int) -> str:
        buf = ctypes.create_string_buffer(64)
        n = self.llama.llama_token_to_piece(self.vocab, token, buf, 64, 0, True)
        return buf.raw[: max(0, n)].decode("utf-8", errors="replace")

    def render(self, messages: list[dict[str, Any]]) -> str:
        return self._template(messages=messages).prompt

    def tokenize(self, text: str) -> list[int]:
        data = text.encode("utf-8")
        cap = len(data) + 16
        arr = (self.llama.llama_token * cap)()
        n = self.llama.llama_tokenize(self.vocab, data, len(data), arr, cap, False, True)
        if n < 0:
            raise EngineError(f"tokenisation failed ({n})")
        return list(arr[:n])

    def detokenize(self, tokens: list[int]) -> str:
        out = bytearray()
        buf = ctypes.create_string_buffer(128)
        for t in tokens:
            n = self.llama.llama_token_to_piece(self.vocab, t, buf, 128, 0, False)
            out += buf.raw[: max(0, n)]
        return out.decode("utf-8", errors="replace")

    # -- decoding ------------------------------------------------------------------------------------------
    def _next_token(self, i: int, slot: _Slot) -> int:
        import numpy as np

        ptr = self.llama.llama_get_logits_ith(self.ctx, i)
        logits = np.ctypeslib.as_array(ptr, shape=(self.n_vocab,))
        if self.repetition_penalty != 1.0 and slot.out:
            seen = np.fromiter(set(slot.out), dtype=np.int64)
            vals = logits[seen].copy()
            logits = logits.copy()
            logits[seen] = np.where(vals > 0, vals / self.repetition_penalty, vals * self.repetition_penalty)
        return int(np.argmax(logits))

    def generate(self, prompts: list[str], max_new_tokens: int = 96) -> list[Generation]:
        """Greedy completions of rendered prompts, in order.

        The prompts' longest common token prefix (the system message, typically) is decoded once into a
        spare sequence and copied into each slot as it starts (a copy of its KV stream; in a unified cache a
        tag on the shared cells), so each post pays for its own tokens only."""
        lc = self.llama
        limit = self.ctx_per_seq - max_new_tokens
        tokenized = [self.tokenize(p) for p in prompts]
        for i, toks in enumerate(tokenized):
            if len(toks) > limit:
                raise PromptTooLong(i, len(toks), limit)
        if not tokenized:
            return []
        lc.llama_memory_clear(self.memory, True)
        shared = self._common_prefix(tokenized)
        b = self.batch
        if shared:
            self._decode_tokens(shared, self.n_parallel)
        queue = deque(enumerate(tokenized))
        slots: list[_Slot | None] = [None] * self.n_parallel
        results: list[Generation | None] = [None] * len(prompts)
        while queue or any(slots):
            for s in range(self.n_parallel):
                if slots[s] is None and queue:
                    idx, toks = queue.popleft()
                    lc.llama_memory_seq_rm(self.memory, s, -1, -1)
                    if shared:
                        lc.llama_memory_seq_cp(self.memory, self.n_parallel, s, -1, -1)
                    slots[s] = _Slot(idx, toks, pos=len(shared), pending=list(toks[len(shared):]))
            n, owners = 0, []
            for s, slot in enumerate(slots):
                if slot is None:
                    continue
                for k, tok in enumerate(slot.pending):
                    b.token[n] = tok
                    b.pos[n] = slot.pos + k
                    b.n_seq_id[n] = 1
                    b.seq_id[n][0] = s
                    b.logits[n] = k == len(slot.pending) - 1
                    n += 1
                slot.pos += len(slot.pending)
                owners.append((s, n - 1))
            b.n_tokens = n
            t0 = time.perf_counter()
            rc = lc.llama_decode(self.ctx, b)
            # a step that carries a prompt counts as prefill (its generated tokens are few)
            self.stats["prefill_s" if n > len(owners) else "decode_s"] += time.perf_counter() - t0
            self.stats["steps"] += 1
            if rc != 0:
                raise EngineError(f"llama_decode returned {rc} ({n} tokens, {len(owners)} sequences)")
            for s, i in owners:
                slot = slots[s]
                tok = self._next_token(i, slot)
                eog = lc.llama_vocab_is_eog(self.vocab, tok)
                if not eog:
                    slot.out.append(tok)
                if eog or len(slot.out) >= max_new_tokens:
                    results[slot.index] = Generation(self.detokenize(slot.out).strip(), len(slot.prompt),
                                                     len(slot.out))
                    self.stats["prompt_tokens"] += len(slot.prompt)
                    self.stats["completion_tokens"] += len(slot.out)
                    slots[s] = None
                else:
                    slot.pending = [tok]
        return [r for r in results if r is not None]

    @staticmethod
    def _common_prefix(tokenized: list[list[int]]) -> list[int]:
        """The longest common prefix, leaving every prompt at least one token of its own (worth sharing
        only when several prompts start together)."""
        if len(tokenized) < 2:
            return []
        first = tokenized[0]
        n = min(len(t) for t in tokenized) - 1
        for i in range(max(0, n)):
            if any(t[i] != first[i] for t in tokenized):
                n = i
                break
        return first[:max(0, n)]

    def _decode_tokens(self, tokens: list[int], seq: int) -> None:
        b = self.batch
        for k, tok in enumerate(tokens):
            b.token[k] = tok
            b.pos[k] = k
            b.n_seq_id[k] = 1
            b.seq_id[k][0] = seq
            b.logits[k] = False
        b.n_tokens = len(tokens)
        t0 = time.perf_counter()
        rc = self.llama.llama_decode(self.ctx, b)
        self.stats["prefill_s"] += time.perf_counter() - t0
        if rc != 0:
            raise EngineError(f"llama_decode returned {rc} for the shared prefix ({len(tokens)} tokens)")

    def close(self) -> None:
        lc = self.llama
        if getattr(self, "batch", None) is not None:
            lc.llama_batch_free(self.batch)
            self.batch = None
        if getattr(self, "ctx", None):
            lc.llama_free(self.ctx)
            self.ctx = None
        if getattr(self, "model", None):
            lc.llama_model_free(self.model)
            self.model = None

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass


@lru_cache(maxsize=1)
def _quiet_logger() -> Any:
    """llama.cpp's log callback that drops its messages (kept alive here: C holds the pointer)."""
    import llama_cpp

    return llama_cpp.llama_log_callback(lambda level, text, user_data: None)
