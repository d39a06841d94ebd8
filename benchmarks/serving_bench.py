"""Bounded load test of `lrsa serve` on 127.0.0.1, plus model-only throughput and the encoder's FLOP rate
against this machine's measured matrix-multiply peak.

    LRSA_DATA_DIR=../shared/data nice -n 10 .venv/bin/python benchmarks/serving_bench.py \
        --checkpoint runs/serving-bench/best --train-tiny --requests 2000 --concurrency 16

For each of micro-batching on / off it starts a real `lrsa serve` process, sends `--requests` requests at
`--concurrency` (text + image description, then the same with a real JPEG photo as a multipart upload), each
phase also stopped by `--max-seconds`, and records p50/p95/p99 latency, requests/s, errors and the server's
resident memory after warm-up and at the end. Then, in this process: posts/s of `predict_batch` at batch
sizes 1 and 16, and the GFLOP/s of the text encoder's forward pass next to the best GFLOP/s of a float32
matmul. Prints a table; writes JSON (default results/serving/bench.json). Requests are real twitter2015 test
posts with their MDCA captions; the photo is scikit-image's chelsea.png (as JPEG).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
import time
from pathlib import Path
from typing import Any

import httpx

from lrsa.serving.client import free_port, wait_healthy

REPO = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------- inputs


def real_posts(n: int) -> list[dict[str, str]]:
    from lrsa.data import load_dataset
    from lrsa.data.side import side_inputs

    examples = load_dataset("twitter2015", "test")[:n]
    captions = side_inputs("twitter2015")["mdca_captions"]
    return [{"id": ex.id, "text": ex.text, "image_text": "; ".join(t.strip() for t in captions[ex.image_id][:4])}
            for ex in examples]


def photo_jpeg() -> bytes:
    import skimage
    from PIL import Image

    with Image.open(Path(skimage.__file__).parent / "data" / "chelsea.png") as im:
        buf = io.BytesIO()
        im.convert("RGB").save(buf, "JPEG", quality=90)
        return buf.getvalue()


def train_tiny(out: Path, data_dir: str) -> Path:
    """The serving tests' recipe: full LRSA, 2 steps on 16 twitter2015 posts (a real but untrained model)."""
    from lrsa.config import ModelConfig, RunConfig, TrainConfig
    from lrsa.training.loop import train

    run = RunConfig(name="serving-bench", model=ModelConfig(fusion="dual", image_side="captions"),
                    train=TrainConfig(dataset="twitter2015", epochs=1, train_limit=16, dev_limit=4, batch_size=8,
                                      max_steps_per_epoch=2, eval_test=False, seed=0))
    train(run, out, data_dir=data_dir, log=lambda _m: None)
    return out / "best"


# --------------------------------------------------------------------------- server process


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


class Server:
    def __init__(self, checkpoint: Path, batching: bool, log: Path, torch_threads: int = 0):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = open(log, "wb")
        cmd = [sys.executable, "-m", "lrsa", "serve", "--checkpoint", str(checkpoint), "--port", str(self.port),
               "--log-level", "warning", "--batching" if batching else "--no-batching",
               "--torch-threads", str(torch_threads)]
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, cwd=REPO)

    def wait(self, timeout_s: float = 300) -> None:
        self.log.flush()
        wait_healthy(self.url, timeout_s, self.proc, Path(self.log.name), poll_s=0.3)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


# --------------------------------------------------------------------------- load generator


async def load(url: str, posts: list[dict], image: bytes | None, n: int, concurrency: int,
               max_seconds: float) -> dict[str, Any]:
    latencies: list[float] = []
    errors: dict[str, int] = {}
    batch_posts: list[int] = []
    next_i = 0
    t_start = time.perf_counter()
    deadline = t_start + max_seconds

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal next_i
        while next_i < n and time.perf_counter() < deadline:
            i = next_i
            next_i += 1
            post = posts[i % len(posts)]
            t0 = time.perf_counter()
            try:
                if image is None:
                    r = await client.post("/v1/predict", json=post)
                else:
                    r = await client.post("/v1/predict", data=post,
                                          files={"image": ("chelsea.jpg", image, "image/jpeg")})
                ok = r.status_code == 200
                key = None if ok else f"HTTP {r.status_code}"
                if ok:
                    batch_posts.append(r.json()["server"]["batch_posts"])
            except httpx.HTTPError as e:
                key = type(e).__name__
            if key is None:
                latencies.append((time.perf_counter() - t0) * 1000)
            else:
                errors[key] = errors.get(key, 0) + 1

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
    wall = time.perf_counter() - t_start
    done = len(latencies) + sum(errors.values())
    q = statistics.quantiles(latencies, n=100) if len(latencies) >= 2 else [float("nan")] * 99
    return {
        "requests": done, "ok": len(latencies), "errors": sum(errors.values()), "error_kinds": errors,
        "stopped_by_time": done < n, "seconds": round(wall, 2), "requests_per_s": round(done / wall, 2),
        "latency_ms": {"p50": round(q[49], 1), "p95": round(q[94], 1), "p99": round(q[98], 1),
                       "mean": round(statistics.fmean(latencies), 1) if latencies else None},
        "mean_batch_posts": round(statistics.fmean(batch_posts), 2) if batch_posts else None,
    }


def serve_phase(checkpoint: Path, batching: bool, posts: list[dict], photo: bytes, args, log_dir: Path) -> dict:
    server = Server(checkpoint, batching, log_dir / f"serve-{'batching' if batching else 'plain'}.log",
                    args.torch_threads)
    try:
        server.wait()
        # Warm-up: load the lazy parts (rationale backend, side encoder) and reach the largest batches once,
        # so that what follows measures growth, not the allocator's first high-water mark.
        for image in (None, photo):
            asyncio.run(load(server.url, posts, image, 4 * args.concurrency, args.concurrency, 300))
        rss_before = rss_mib(server.proc.pid)
        out: dict[str, Any] = {"rss_mib_after_warmup": round(rss_before, 1)}
        samples: list[float] = []
        stop = threading.Event()

        def sample() -> None:  # resident memory every second, to tell a plateau from a leak
            while not stop.wait(1.0):
                samples.append(round(rss_mib(server.proc.pid), 1))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        for kind, image in (("text", None), ("image", photo)):
            print(f"  batching={'on' if batching else 'off'} {kind}: {args.requests} requests at "
                  f"concurrency {args.concurrency} ...", flush=True)
            out[kind] = asyncio.run(load(server.url, posts, image, args.requests, args.concurrency, args.max_seconds))
            out[f"rss_mib_after_{kind}"] = round(rss_mib(server.proc.pid), 1)
        stop.set()
        sampler.join()
        rss_after = rss_mib(server.proc.pid)
        out["rss_mib_at_end"] = round(rss_after, 1)
        out["rss_growth_pct"] = round(100 * (rss_after - rss_before) / rss_before, 2)
        half = len(samples) // 2
        out["rss_mib_samples"] = {"count": len(samples), "max_first_half": max(samples[:half], default=None),
                                  "max_second_half": max(samples[half:], default=None)}
        out["server_stats"] = httpx.get(f"{server.url}/v1/stats").json()
        return out
    finally:
        server.stop()


# --------------------------------------------------------------------------- model-only figures


def model_only(checkpoint: Path, posts: list[dict], rounds: int = 3) -> dict[str, Any]:
    """posts/s of predict_batch at batch 1 (16 posts) and batch 16 (64 posts), after one warm-up pass over the
    same posts (as the server is warm); best and median of `rounds` rounds (the machine is shared: the best
    round is the least disturbed one)."""
    from lrsa.api import LRSA

    model = LRSA.from_pretrained(checkpoint)
    out: dict[str, Any] = {}
    for bs, n in ((1, 16), (16, 64)):
        for i in range(0, n, bs):  # warm-up on the same posts: first calls on new shapes are several times slower
            model.predict_batch(posts[i:i + bs], batch_size=bs)
        rates = []
        for _ in range(rounds):
            t0 = time.perf_counter()
            for i in range(0, n, bs):
                model.predict_batch(posts[i:i + bs], batch_size=bs)
            rates.append(n / (time.perf_counter() - t0))
        out[f"batch_{bs}"] = {"posts": n, "rounds": rounds, "posts_per_s_best": round(max(rates), 2),
                              "posts_per_s_median": round(statistics.median(rates), 2)}
    out["stage_ms_per_post_at_batch_16"] = model.predict_batch(posts[:16], batch_size=16)[0].timings_ms
    return out


def matmul_peak(sizes=(512, 1024, 2048), reps: int = 5, dtype: str = "float32") -> dict[str, Any]:
    import torch

    best, per = 0.0, {}
    for n in sizes:
        a, b = torch.randn(n, n, dtype=getattr(torch, dtype)), torch.randn(n, n, dtype=getattr(torch, dtype))
        torch.mm(a, b)
        times = []
        for _ in range(reps):
            t0 = time.perf_counter()
            torch.mm(a, b)
            times.append(time.perf_counter() - t0)
        g = 2 * n**3 / min(times) / 1e9
        per[str(n)] = round(g, 2)
        best = max(best, g)
    return {"gflops_best": round(best, 2), "gflops_by_size": per, "dtype": dtype, "threads": torch.get_num_threads()}


def encoder_rate(checkpoint: Path, posts: list[dict], reps: int = 5, precision: str = "fp32") -> dict[str, Any]:
    """GFLOP/s of the text encoder's forward pass (FLOPs counted by torch's FlopCounterMode), best of `reps`,
    on real posts (16 of them, as tokenised) and on a larger 64 x 128 batch, in ``precision``."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from lrsa.api import LRSA
    from lrsa.precision import autocast

    model = LRSA.from_pretrained(checkpoint)
    enc = model.net.encoder
    out: dict[str, Any] = {"encoder": type(enc).__name__}
    texts = [p["text"] for p in posts]
    shapes = {"posts_16": dict(batch=16, pad="longest"), "batch_64x128": dict(batch=64, pad="max_length")}
    for name, shape in shapes.items():
        batch = [texts[i % len(texts)] for i in range(shape["batch"])]
        inputs = model.tokenizer(batch, padding=shape["pad"], truncation=True, max_length=128, return_tensors="pt")
        with torch.inference_mode(), autocast(precision):
            enc(**inputs)
            with FlopCounterMode(display=False) as counter:
                enc(**inputs)
            flops = counter.get_total_flops()
            times = []
            for _ in range(reps):
                t0 = time.perf_counter()
                enc(**inputs)
                times.append(time.perf_counter() - t0)
        out[name] = {"shape": list(inputs["input_ids"].shape), "gflop_per_forward": round(flops / 1e9, 3),
                     "seconds_best": round(min(times), 4), "gflops": round(flops / min(times) / 1e9, 2)}
    return out


# --------------------------------------------------------------------------- main


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", type=Path, required=True)
    ap.add_argument("--train-tiny", action="store_true", help="train the tests' tiny checkpoint there if missing")
    ap.add_argument("--requests", type=int, default=2000, help="requests per phase")
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--max-seconds", type=float, default=300, help="each phase also stops after this long")
    ap.add_argument("--model-rounds", type=int, default=3, help="rounds of each model-only measurement")
    ap.add_argument("--torch-threads", type=int, default=0,
                    help="torch intra-op threads for the server and the in-process figures (0: torch's default)")
    ap.add_argument("--out", type=Path, default=REPO / "results" / "serving" / "bench.json")
    args = ap.parse_args()

    if not os.environ.get("LRSA_DATA_DIR"):
        sys.exit("set LRSA_DATA_DIR (e.g. ../shared/data)")
    ckpt = args.checkpoint
    if not (ckpt / "config.json").exists() and (ckpt / "best" / "config.json").exists():
        ckpt = ckpt / "best"
    if not (ckpt / "config.json").exists():
        if not args.train_tiny:
            sys.exit(f"{ckpt}: no checkpoint (give --train-tiny to make the tests' tiny one)")
        t0 = time.perf_counter()
        ckpt = train_tiny(ckpt.parent if ckpt.name == "best" else ckpt, os.environ["LRSA_DATA_DIR"])
        print(f"trained the tiny checkpoint in {time.perf_counter() - t0:.0f} s: {ckpt}")

    posts = real_posts(200)
    photo = photo_jpeg()
    started = time.time()
    result: dict[str, Any] = {
        "command": " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "loadavg_at_start": os.getloadavg()},
        "settings": {"requests": args.requests, "concurrency": args.concurrency, "max_seconds": args.max_seconds,
                     "photo_bytes": len(photo), "posts": "twitter2015 test[:200] + MDCA captions, cycled"},
    }
    import torch

    result["machine"]["torch"] = torch.__version__
    # The compute figures run in one dedicated thread, as inference does in the server (on this shared
    # machine the main thread's first calls were several times slower than a worker thread's).
    compute = ThreadPoolExecutor(max_workers=1)
    if args.torch_threads:
        compute.submit(torch.set_num_threads, args.torch_threads).result()
        torch.set_num_threads(args.torch_threads)
    result["settings"]["torch_threads"] = compute.submit(torch.get_num_threads).result()
    print("matmul peak ...", flush=True)
    result["matmul_peak"] = compute.submit(matmul_peak).result()
    print("encoder forward ...", flush=True)
    result["encoder_forward"] = compute.submit(encoder_rate, ckpt, posts).result()
    for name in ("posts_16", "batch_64x128"):
        x = result["encoder_forward"][name]
        x["fraction_of_matmul_peak"] = round(x["gflops"] / result["matmul_peak"]["gflops_best"], 3)
    print("model-only throughput ...", flush=True)
    result["model_only"] = compute.submit(model_only, ckpt, posts[:64], args.model_rounds).result()
    compute.shutdown()
    try:
        from lrsa.api import LRSA

        result["model"] = {k: v for k, v in LRSA.from_pretrained(ckpt).info().items() if k != "path"}
    except Exception as e:  # informative only
        result["model"] = {"error": str(e)}
    with tempfile.TemporaryDirectory(prefix="lrsa-serving-bench-") as tmp:
        for batching in (True, False):
            result["batching_on" if batching else "batching_off"] = serve_phase(
                ckpt, batching, posts, photo, args, Path(tmp))
    result["machine"]["loadavg_at_end"] = os.getloadavg()
    result["wall_seconds"] = round(time.time() - started, 1)

    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = args.out.with_name(f".{args.out.name}.part")
    tmp_out.write_text(json.dumps(result, indent=2) + "\n")
    os.replace(tmp_out, args.out)
    print_report(result)
    print(f"\nwrote {args.out}")
    # the headline figures (micro-batching on, JSON posts) also go to results/benchmarks/speed.json
    from lrsa.io import git_commit
    from speed_record import record

    on = result["batching_on"]["text"]
    record("service", {"requests": on["requests"], "errors": on["errors"], "requests_per_s": on["requests_per_s"],
                       "p95_ms": on["latency_ms"]["p95"], "p50_ms": on["latency_ms"]["p50"],
                       "concurrency": args.concurrency, "rss_growth_pct": result["batching_on"]["rss_growth_pct"],
                       "checkpoint": str(args.checkpoint), "torch_threads": result["settings"]["torch_threads"],
                       "commit": git_commit(), "machine": result["machine"], "details": str(args.out)})


def print_report(r: dict[str, Any]) -> None:
    print(f"\nload test on 127.0.0.1: {r['settings']['requests']} requests per phase at concurrency "
          f"{r['settings']['concurrency']}, torch threads {r['settings']['torch_threads']} "
          f"(load average at start {r['machine']['loadavg_at_start'][0]:.1f}, "
          f"{r['machine']['cpus']} CPUs shared by client and server)")
    print(f"{'batching':<9} {'input':<6} {'done':>6} {'err':>4} {'req/s':>7} {'p50 ms':>8} {'p95 ms':>8} "
          f"{'p99 ms':>8} {'posts/call':>10}")
    for key in ("batching_on", "batching_off"):
        for kind in ("text", "image"):
            x = r[key][kind]
            print(f"{key[9:]:<9} {kind:<6} {x['requests']:>6} {x['errors']:>4} {x['requests_per_s']:>7} "
                  f"{x['latency_ms']['p50']:>8} {x['latency_ms']['p95']:>8} {x['latency_ms']['p99']:>8} "
                  f"{x['mean_batch_posts'] or 0:>10}")
        print(f"          RSS {r[key]['rss_mib_after_warmup']} MiB after warm-up -> {r[key]['rss_mib_at_end']} MiB "
              f"({r[key]['rss_growth_pct']:+.1f} %)")
    m = r["model_only"]
    print(f"model only (in process, best of {m['batch_1']['rounds']} rounds): "
          f"{m['batch_1']['posts_per_s_best']} posts/s at batch 1, {m['batch_16']['posts_per_s_best']} posts/s at "
          f"batch 16 (medians {m['batch_1']['posts_per_s_median']} / {m['batch_16']['posts_per_s_median']})")
    e, p = r["encoder_forward"], r["matmul_peak"]
    for name in ("posts_16", "batch_64x128"):
        x = e[name]
        print(f"encoder forward ({e['encoder']}, {x['shape'][0]}x{x['shape'][1]} tokens): {x['gflops']} GFLOP/s = "
              f"{100 * x['fraction_of_matmul_peak']:.0f} % of the measured float32 matmul peak "
              f"{p['gflops_best']} GFLOP/s")


if __name__ == "__main__":
    main()
