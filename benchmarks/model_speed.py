"""Model speed and memory on this machine: training examples/s and epoch time with and without cached
frozen side states (rationales, captions) and cached frozen lower layers; inference examples/s (batch)
and per-example latency; peak memory. Prints the figures and writes results/benchmarks/model.json.

    LRSA_DATA_DIR=../shared/data .venv/bin/python benchmarks/model_speed.py [--steps 8] [--threads 2]

Figures depend on the load of the machine (other processes on the 2 shared cores); the load average
is recorded with them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

import torch


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=8, help="training steps timed per setting")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--out", default="results/benchmarks/model.json")
    args = ap.parse_args()

    from lrsa.config import RunConfig, apply_overrides, variant_overrides
    from lrsa.features.side_cache import FrozenTextEncoder, weights_fingerprint
    from lrsa.features.text import load_tokenizer, resolve_backbone
    from lrsa.model.inputs import collate
    from lrsa.model.lrsa import LRSANet
    from lrsa.rationales import load_bundle
    from lrsa.training.data import attach_lower_states, load_split

    torch.set_num_threads(args.threads or os.cpu_count() or 1)
    torch.manual_seed(0)
    path = resolve_backbone("minilm")
    tok = load_tokenizer(path)
    rats = load_bundle("twitter2015", "lexicon")
    n_ex = args.steps * args.batch
    train_size = 2101
    load0 = os.getloadavg()
    figures: dict = {"machine": {"cpus": os.cpu_count(), "threads": torch.get_num_threads(),
                                 "python": platform.python_version(), "torch": torch.__version__,
                                 "loadavg_start": [round(x, 2) for x in load0]},
                     "setup": {"dataset": "twitter2015", "backbone": "minilm", "batch": args.batch,
                               "steps_timed": args.steps, "train_sentences": train_size}}
    cache = Path(tempfile.mkdtemp(prefix="lrsa-bench-"))

    # --- side states: encoding cost once vs cache hit
    enc = FrozenTextEncoder("minilm", 48, cache_dir=cache)
    run = RunConfig.model_validate(apply_overrides({}, variant_overrides("lrsa")))
    t0 = time.perf_counter()
    load_split(run, "train", tok, enc, None, rats, n_ex)
    enc_s = time.perf_counter() - t0
    enc2 = FrozenTextEncoder("minilm", 48, cache_dir=cache)
    t0 = time.perf_counter()
    load_split(run, "train", tok, enc2, None, rats, n_ex)
    hit_s = time.perf_counter() - t0
    figures["side_state_cache"] = {
        "texts": enc.stats["encoded"], "encode_seconds": round(enc.stats["seconds"], 2),
        "encode_ms_per_text": round(1000 * enc.stats["seconds"] / max(1, enc.stats["encoded"]), 1),
        "prepare_split_seconds_cold": round(enc_s, 2), "prepare_split_seconds_cached": round(hit_s, 2)}

    def time_steps(variant: str, **over) -> dict:
        r = RunConfig.model_validate(apply_overrides({}, {**variant_overrides(variant), **over}))
        se = FrozenTextEncoder("minilm", 48, cache_dir=cache) if r.model.side_encoder == "frozen" else None
        sp = load_split(r, "train", tok, se, None, rats if r.model.uses_rationales else None, n_ex)
        side_dim = 384
        net = LRSANet(r.model, path, side_dim=side_dim)
        attach_lower_states(sp, net, weights_fingerprint(path), cache)
        opt = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], 1e-4, foreach=True)
        net.train()
        chunks = [sp.items[i:i + args.batch] for i in range(0, n_ex, args.batch)]
        # one warm-up step, then the timed ones
        for k, chunk in enumerate([chunks[0]] + chunks):
            if k == 1:
                t = time.perf_counter()
            b = collate(chunk, tok.pad_token_id, sp.side)
            loss = net.loss(b)
            opt.zero_grad()
            loss.backward()
            opt.step()
        dt = time.perf_counter() - t
        eps = n_ex / dt
        return {"examples_per_s": round(eps, 2), "epoch_seconds_est": round(train_size / eps, 1),
                "trainable_params": sum(p.numel() for p in net.parameters() if p.requires_grad)}

    settings = {
        "text_full_finetune": ("text", {}),
        "text_top2_cached_lower": ("text", {"model.train_layers": 2}),
        "lrsa_frozen_cached_side_full_finetune": ("lrsa", {}),
        "lrsa_frozen_cached_side_top2": ("lrsa", {"model.train_layers": 2}),
        "lrsa_shared_side_encoder_top2": ("lrsa", {"model.train_layers": 2, "model.side_encoder": "shared"}),
        "generative_lrsa_top2": ("lrsa", {"model.train_layers": 2, "model.host": "generative"}),
    }
    figures["training"] = {}
    for name, (variant, over) in settings.items():
        figures["training"][name] = time_steps(variant, **over)
        print(name, figures["training"][name], flush=True)
    # "shared" trains the side encoder through the tweet encoder: no cache possible
    tr = figures["training"]
    figures["training"]["speedup_cached_frozen_side_vs_shared"] = round(
        tr["lrsa_frozen_cached_side_top2"]["examples_per_s"] / tr["lrsa_shared_side_encoder_top2"]["examples_per_s"], 2)
    figures["training"]["speedup_top2_cached_lower_vs_full"] = round(
        tr["text_top2_cached_lower"]["examples_per_s"] / tr["text_full_finetune"]["examples_per_s"], 2)

    # --- inference through the public API (rationales from the lexicon backend, side states live)
    from lrsa.api import LRSA
    from lrsa.data import load_dataset

    model = LRSA.build(RunConfig.model_validate(apply_overrides({}, {**variant_overrides("lrsa"),
                                                                    "model.train_layers": 2})))
    exs = load_dataset("twitter2015", "test")[:64]
    from lrsa.data import side_inputs

    caps = side_inputs("twitter2015")["mdca_captions"]
    posts = [{"text": e.text, "image_text": "; ".join(caps[e.image_id][:4])} for e in exs]
    model.predict_batch(posts[:4])  # load the side encoder
    t = time.perf_counter()
    model.predict_batch(posts)
    batch_s = time.perf_counter() - t
    lat = []
    stages: dict[str, float] = {}
    for p in posts[:16]:
        t = time.perf_counter()
        pred = model.predict(p["text"], image_text=p["image_text"])
        lat.append(1000 * (time.perf_counter() - t))
        for k, v in pred.timings_ms.items():
            stages[k] = stages.get(k, 0.0) + v / 16
    lat.sort()
    figures["inference"] = {"variant": "lrsa span (untrained weights; speed only)", "batch_posts": len(posts),
                            "batch_examples_per_s": round(len(posts) / batch_s, 2),
                            "latency_ms_p50": round(lat[len(lat) // 2], 1), "latency_ms_max": round(lat[-1], 1),
                            "stage_ms_mean": {k: round(v, 2) for k, v in stages.items()}}
    figures["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    figures["machine"]["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(figures, indent=2) + "\n")
    json.dump(figures, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
