"""Load test of `lrsa serve` on 127.0.0.1 with a compiled load generator (wrk), a memory soak, and the grid
of fast-path levers.

One setting (a real `lrsa serve` process with the given options), measured and soaked:

    LRSA_DATA_DIR=../shared/data .venv/bin/python benchmarks/serving_bench.py --checkpoint CKPT \\
        --serve-args "--precision fp32 --quantize all --workers 2 --torch-threads 1" [--soak 600] [--record]

The lever grid (each setting briefly, no soak), then the best setting with the soak:

    ... benchmarks/serving_bench.py --checkpoint CKPT --levers [--record]

For a setting it starts `python -m lrsa serve --checkpoint CKPT <serve args>` on a free port of 127.0.0.1,
waits until it (every worker) is ready, warms it up (`--warmup` seconds of load: lazy loads, the largest
batches, the allocator's first high-water mark), then runs wrk (`-t1 -c16`, `--duration` seconds) with
benchmarks/wrk_predict.lua, which POSTs real Twitter-2015 test posts with their MDCA captions as
`image_text` (all 674, rotating) as JSON to /v1/predict; then, if `--soak` > 0, the same load for that long
while the resident memory of the server's processes (all workers) is sampled every `--sample-s` seconds.
Figures: requests/s, latency p50/p95/p99 (wrk's, over every request of the run), errors (connect, read,
write, timeout, and non-2xx answers), RSS after warm-up, at the end of the soak and its peak; growth = end
of soak against after warm-up. wrk is a C program on one thread: the client takes little of a core.

`--levers` runs every setting of LEVERS (or `--only NAME ...`) briefly (`--lever-warmup`, `--lever-duration`
seconds), then takes the setting with the most requests/s among those with 0 errors, p95 <= `--p95-ms` and
a test F1 change >= -`--max-f1-loss` in results/serving/fast_path_check.json (written by
benchmarks/fast_path_check.py on the same checkpoint; a setting the check has not scored is skipped unless
it changes nothing in the model), and runs it again with the soak. Writes results/serving/bench.json (and
levers.json); with `--record`, the headline figures go to the `service` section of
results/benchmarks/speed.json (the other sections are kept) with the machine, commit and setting.
benchmarks/service_figures.sh runs it all.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
WRK_LUA = Path(__file__).resolve().parent / "wrk_predict.lua"
MAIN_LRSA = REPO / "runs" / "reproduce" / "main" / "twitter2015" / "span" / "lrsa-arkmsa" / "seed0"

#: The lever grid on a 2-core machine: name -> `lrsa serve` options (beside --checkpoint and --port). The
#: reference is the committed figure's setting (the checkpoint's precision, one process, one torch thread).
#: Precision: bf16 pays only on CPUs with AMX / AVX512-BF16 (elsewhere fp32 is several times faster);
#: int8 dynamic quantization (lrsa.model.quantize) computes in fp32 around int8 products; workers x torch
#: threads is the process layout; the oneDNN primitive cache bounds bf16's memory.
LEVERS: dict[str, str] = {
    "reference 1x1": "--torch-threads 1",
    "reference 1x2": "--torch-threads 2",
    "reference 2x1": "--workers 2 --torch-threads 1",
    "reference 2x1 onednn16": "--workers 2 --torch-threads 1 --onednn-cache-capacity 16",
    "int8 side 2x1": "--quantize side --workers 2 --torch-threads 1",
    "fp32 1x1": "--precision fp32 --torch-threads 1",
    "fp32 1x2": "--precision fp32 --torch-threads 2",
    "fp32 2x1": "--precision fp32 --workers 2 --torch-threads 1",
    "fp32 int8 side 2x1": "--precision fp32 --quantize side --workers 2 --torch-threads 1",
    "int8 all 1x2": "--quantize all --torch-threads 2",
    "int8 all 2x1": "--quantize all --workers 2 --torch-threads 1",
    "int8 all 2x1 side64": "--quantize all --side-max-tokens 64 --workers 2 --torch-threads 1",
}


# --------------------------------------------------------------------------- inputs


def real_posts(n: int, dataset: str = "twitter2015", split: str = "test") -> list[dict[str, str]]:
    from lrsa.data import load_dataset
    from lrsa.data.side import side_inputs

    examples = load_dataset(dataset, split)[:n]
    captions = side_inputs(dataset)["mdca_captions"]
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


# --------------------------------------------------------------------------- machine


def cpu_info() -> dict[str, Any]:
    """CPU model and the matrix-instruction flags that decide which precision is fast here."""
    from lrsa.env import cpu_flags, cpu_model

    flags = cpu_flags() or set()
    wanted = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16", "amx_int8")
    return {"cpu": cpu_model() or "unknown", "cpus": os.cpu_count(), "cpu_flags": [f for f in wanted if f in flags]}


def machine() -> dict[str, Any]:
    import torch

    return {**cpu_info(), "python": platform.python_version(), "torch": torch.__version__,
            "kernel": platform.release(), "loadavg_at_start": os.getloadavg()}


# --------------------------------------------------------------------------- server process


def tree_pids(pid: int) -> list[int]:
    """``pid`` and all its descendants (the workers of `lrsa serve --workers N`)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for t in Path(f"/proc/{p}/task").iterdir():
                todo.extend(int(c) for c in (t / "children").read_text().split())
        except OSError:
            continue
    return out


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def tree_rss_mib(pid: int) -> float:
    """Resident memory of a process and its descendants, MiB (a process that ends meanwhile counts 0)."""
    total = 0.0
    for p in tree_pids(pid):
        try:
            total += rss_mib(p)
        except (OSError, RuntimeError):
            pass
    return total


def option(serve_args: list[str], name: str, default: str | None = None) -> str | None:
    for i, a in enumerate(serve_args):
        if a == name and i + 1 < len(serve_args):
            return serve_args[i + 1]
        if a.startswith(name + "="):
            return a.split("=", 1)[1]
    return default


class Server:
    """`python -m lrsa serve --checkpoint CKPT --port P <serve_args>` as a child process."""

    def __init__(self, checkpoint: Path, serve_args: list[str], log: Path):
        from lrsa.serving.client import free_port

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.workers = int(option(serve_args, "--workers", "1"))
        self.log_path = log
        self.log = open(log, "wb")
        cmd = [sys.executable, "-m", "lrsa", "serve", "--checkpoint", str(checkpoint), "--port", str(self.port),
               "--log-level", "warning", *serve_args]
        self.cmd = cmd
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, cwd=REPO)

    def wait(self, timeout_s: float = 600) -> None:
        """Until /healthz answers and, with several workers, every worker has loaded its model and listens
        (wrk opens its connections once: a worker still loading would get none of them)."""
        from lrsa.serving.client import wait_healthy

        deadline = time.monotonic() + timeout_s
        wait_healthy(self.url, timeout_s, self.proc, self.log_path, poll_s=0.3)
        while self.workers > 1 and b"workers ready" not in self.log_path.read_bytes():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"workers not ready:\n{self.log_path.read_text(errors='replace')[-4000:]}")
            time.sleep(0.3)

    def rss_mib(self) -> float:
        return tree_rss_mib(self.proc.pid)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                for p in reversed(tree_pids(self.proc.pid)):  # only this server's own processes
                    try:
                        os.kill(p, 9)
                    except OSError:
                        pass
                self.proc.wait()
        self.log.close()


# --------------------------------------------------------------------------- wrk


def wrk_binary() -> str:
    path = shutil.which("wrk")
    if path is None:
        sys.exit("wrk not found: apt-get install wrk (Debian's wrk 4.1.0), or put a wrk binary on PATH")
    return path


def wrk_version() -> str:
    out = subprocess.run([wrk_binary(), "-v"], capture_output=True, text=True).stdout
    return out.splitlines()[0].split(" Copyright")[0].strip() if out else "wrk (version unknown)"


def write_bodies(posts: list[dict], path: Path) -> Path:
    with open(path, "w", encoding="utf-8") as fh:
        for p in posts:
            fh.write(json.dumps(p, ensure_ascii=False) + "\n")  # json.dumps escapes newlines: one body a line
    return path


def run_wrk(url: str, bodies: Path, seconds: float, concurrency: int, threads: int = 1,
            timeout_s: int = 30) -> dict[str, Any]:
    """wrk for ``seconds`` at ``concurrency`` connections; the summary of wrk_predict.lua with req/s and ms."""
    with tempfile.TemporaryDirectory(prefix="lrsa-wrk-") as tmp:
        out = Path(tmp) / "wrk.json"
        env = {**os.environ, "LRSA_WRK_BODIES": str(bodies), "LRSA_WRK_OUT": str(out)}
        cmd = [wrk_binary(), f"-t{threads}", f"-c{concurrency}", f"-d{max(1, round(seconds))}s",
               f"--timeout={timeout_s}s", "-s", str(WRK_LUA), url]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=seconds + timeout_s + 60)
        if proc.returncode != 0 or not out.exists():
            raise RuntimeError(f"wrk failed ({proc.returncode}): {proc.stdout}\n{proc.stderr}")
        r = json.loads(out.read_text())
    sec = r["duration_us"] / 1e6
    lat = {k: round(v / 1000, 1) for k, v in r["latency_us"].items()}
    errors = sum(r["errors"].values())
    return {"seconds": round(sec, 2), "requests": r["requests"], "errors": errors, "error_kinds": r["errors"],
            "requests_per_s": round(r["requests"] / sec, 2), "ok_per_s": round((r["requests"] - errors) / sec, 2),
            "latency_ms": lat, "concurrency": concurrency, "wrk_threads": threads}


# --------------------------------------------------------------------------- one setting


def run_setting(checkpoint: Path, serve_args: list[str], bodies: Path, args: argparse.Namespace, log: Path,
                soak_s: float) -> dict[str, Any]:
    import httpx

    server = Server(checkpoint, serve_args, log)
    out: dict[str, Any] = {"serve_args": shlex.join(serve_args)}
    try:
        t0 = time.perf_counter()
        server.wait()
        out["ready_s"] = round(time.perf_counter() - t0, 1)
        out["model"] = httpx.get(f"{server.url}/v1/model", timeout=30).json().get("model", {})
        # Warm-up until at least 4 x concurrency requests have been answered (the lazy loads are done and the
        # largest batches have run), in rounds of --warmup seconds, at most 5 rounds.
        rounds = []
        while len(rounds) < 5 and sum(r["requests"] for r in rounds) < 4 * args.concurrency:
            rounds.append(run_wrk(server.url, bodies, args.warmup, args.concurrency, args.wrk_threads))
        out["warmup"] = {**rounds[-1], "rounds": len(rounds), "requests": sum(r["requests"] for r in rounds),
                         "errors": sum(r["errors"] for r in rounds)}
        out["rss_mib_after_warmup"] = round(server.rss_mib(), 1)
        print(f"    warm-up {len(rounds)} x {args.warmup:.0f} s: {out['warmup']['requests']} requests; RSS "
              f"{out['rss_mib_after_warmup']} MiB; measuring {args.duration:.0f} s ...", flush=True)
        out["load"] = run_wrk(server.url, bodies, args.duration, args.concurrency, args.wrk_threads)
        if out["load"]["requests"] < 2 * args.concurrency:  # too few answers for a latency percentile
            raise RuntimeError(f"only {out['load']['requests']} requests answered in {args.duration:.0f} s: "
                               "the machine is too busy or the run too short to measure this setting")
        out["rss_mib_after_load"] = round(server.rss_mib(), 1)
        if soak_s > 0:
            samples: list[tuple[float, float]] = []
            stop = threading.Event()
            t_soak = time.perf_counter()

            def sample() -> None:
                while not stop.wait(args.sample_s):
                    samples.append((round(time.perf_counter() - t_soak, 1), round(server.rss_mib(), 1)))

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            print(f"    soak {soak_s:.0f} s at concurrency {args.concurrency}, RSS every {args.sample_s:.0f} s ...",
                  flush=True)
            try:
                out["soak"] = run_wrk(server.url, bodies, soak_s, args.concurrency, args.wrk_threads)
            finally:
                stop.set()
                sampler.join()
            end = round(server.rss_mib(), 1)
            base = out["rss_mib_after_warmup"]
            rss = [r for _, r in samples] + [end]
            half = len(rss) // 2
            out["soak"]["rss_mib"] = {
                "after_warmup": base, "at_soak_start": out["rss_mib_after_load"], "at_end": end,
                "max": max(rss), "max_first_half": max(rss[:half], default=None),
                "max_second_half": max(rss[half:], default=None), "samples": samples}
            out["rss_growth_pct"] = round(100 * (end - base) / base, 2)
            out["rss_growth_pct_at_peak"] = round(100 * (max(rss) - base) / base, 2)
        else:
            out["rss_growth_pct"] = round(100 * (out["rss_mib_after_load"] - out["rss_mib_after_warmup"])
                                          / out["rss_mib_after_warmup"], 2)
        out["server_stats_one_worker"] = httpx.get(f"{server.url}/v1/stats", timeout=30).json()
        out["server_alive"] = server.proc.poll() is None
    finally:
        server.stop()
    return out


# --------------------------------------------------------------------------- levers


def checkpoint_dir(p: Path) -> Path:
    """A checkpoint directory, or a run directory's dev-best one (as ``LRSA.from_pretrained`` reads it)."""
    return p / "best" if (p / "best" / "config.json").exists() else p


def without_precision(serve_args: list[str], ckpt_precision: str) -> list[str]:
    """``serve_args`` without a ``--precision`` that names the checkpoint's own precision (a no-op)."""
    out, skip = [], False
    for i, a in enumerate(serve_args):
        if skip:
            skip = False
        elif a == "--precision" and i + 1 < len(serve_args) and serve_args[i + 1] == ckpt_precision:
            skip = True
        elif a != f"--precision={ckpt_precision}":
            out.append(a)
    return out


def model_setting(serve_args: list[str], ckpt_precision: str) -> str:
    """The name fast_path_check.py gives the model-level part of a setting (``reference``: none)."""
    from fast_path_check import setting_name

    precision, quantize = option(serve_args, "--precision"), option(serve_args, "--quantize", "none")
    budget = option(serve_args, "--side-max-tokens")
    return setting_name({"precision": precision if precision and precision != ckpt_precision else None,
                         "quantize": None if quantize == "none" else quantize,
                         "side_max_tokens": int(budget) if budget else None})


def f1_table(checkpoint: Path, path: Path) -> dict[str, dict]:
    if not path.exists():
        return {}
    data = json.loads(path.read_text())
    if checkpoint_dir(Path(data.get("checkpoint", ""))).resolve() != checkpoint.resolve():
        print(f"  {path}: checked another checkpoint ({data.get('checkpoint')}); F1 changes unknown", flush=True)
        return {}
    return data.get("settings", {})


def choose(rows: dict[str, dict], p95_ms: float, max_f1_loss: float) -> tuple[str | None, str]:
    """The setting with the most requests/s among those with 0 errors, a known F1 change >= -max_f1_loss and
    p95 <= p95_ms (when no setting makes the p95 target, the fastest of the others)."""
    ok = {k: r for k, r in rows.items() if "load" in r and "same_as" not in r and r["load"]["errors"] == 0
          and r.get("f1_change") is not None and r["f1_change"] >= -max_f1_loss}
    if not ok:
        return None, "no setting without errors and with a known F1 change"
    fast = {k: r for k, r in ok.items() if r["load"]["latency_ms"]["p95"] <= p95_ms}
    pool, why = (fast, f"p95 <= {p95_ms:g} ms") if fast else (ok, f"no setting made p95 <= {p95_ms:g} ms")
    best = max(pool, key=lambda k: pool[k]["load"]["requests_per_s"])
    return best, f"most requests/s with 0 errors, F1 change >= -{max_f1_loss:g} and {why}"


# --------------------------------------------------------------------------- main


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", type=Path, default=MAIN_LRSA)
    ap.add_argument("--train-tiny", action="store_true", help="train the tests' tiny checkpoint there if missing")
    ap.add_argument("--serve-args", default="--torch-threads 1", help="lrsa serve options of the one setting")
    ap.add_argument("--levers", action="store_true", help="the lever grid, then the best setting with the soak")
    ap.add_argument("--only", nargs="*", default=None, help="with --levers: these LEVERS names only")
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--wrk-threads", type=int, default=1)
    ap.add_argument("--warmup", type=float, default=30, help="seconds of load before anything is measured")
    ap.add_argument("--duration", type=float, default=60, help="seconds of the measured load (each lever too)")
    ap.add_argument("--soak", type=float, default=600, help="seconds of the soak after it (0: none)")
    ap.add_argument("--lever-warmup", type=float, default=20, help="with --levers: warm-up of each grid setting")
    ap.add_argument("--lever-duration", type=float, default=40, help="with --levers: measured seconds of each")
    ap.add_argument("--sample-s", type=float, default=5, help="RSS sampling period during the soak")
    ap.add_argument("--posts", type=int, default=674, help="test posts the requests rotate through")
    ap.add_argument("--p95-ms", type=float, default=400)
    ap.add_argument("--max-f1-loss", type=float, default=1.0, help="largest test F1 loss a lever may cost")
    ap.add_argument("--f1-check", type=Path, default=REPO / "results" / "serving" / "fast_path_check.json")
    ap.add_argument("--record", action="store_true", help="write the headline into --speed-json")
    ap.add_argument("--speed-json", type=Path, default=REPO / "results" / "benchmarks" / "speed.json")
    ap.add_argument("--out", type=Path, default=REPO / "results" / "serving" / "bench.json")
    args = ap.parse_args()

    if not os.environ.get("LRSA_DATA_DIR"):
        sys.exit("set LRSA_DATA_DIR (e.g. ../shared/data)")
    wrk_binary()
    ckpt = checkpoint_dir(args.checkpoint)
    if not (ckpt / "config.json").exists():
        if not args.train_tiny:
            sys.exit(f"{ckpt}: no checkpoint (give --train-tiny to make the tests' tiny one)")
        ckpt = train_tiny(ckpt.parent if ckpt.name == "best" else ckpt, os.environ["LRSA_DATA_DIR"])
    ckpt_precision = json.loads((ckpt / "config.json").read_text())["run"]["train"].get("precision", "fp32")

    from lrsa.io import git_commit

    started = time.time()
    result: dict[str, Any] = {
        "command": " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]), "commit": git_commit(),
        "machine": machine(), "checkpoint": str(args.checkpoint), "checkpoint_precision": ckpt_precision,
        "load_generator": f"{wrk_version()}, {args.wrk_threads} thread, {args.concurrency} connections, "
                          f"benchmarks/wrk_predict.lua",
        "settings": {"concurrency": args.concurrency, "warmup_s": args.warmup, "duration_s": args.duration,
                     **({"lever_warmup_s": args.lever_warmup, "lever_duration_s": args.lever_duration}
                        if args.levers else {}),
                     "soak_s": args.soak, "rss_sample_s": args.sample_s, "p95_target_ms": args.p95_ms,
                     "max_f1_loss": args.max_f1_loss,
                     "posts": f"twitter2015 test[:{args.posts}] + MDCA captions as image_text, JSON, rotating"},
    }
    with tempfile.TemporaryDirectory(prefix="lrsa-serving-bench-") as tmp:
        bodies = write_bodies(real_posts(args.posts), Path(tmp) / "bodies.jsonl")
        f1 = f1_table(ckpt, args.f1_check)
        if args.levers:
            names = args.only or list(LEVERS)
            unknown = [n for n in names if n not in LEVERS]
            if unknown:
                sys.exit(f"unknown levers {unknown}; known: {list(LEVERS)}")
            rows: dict[str, dict] = {}
            seen: dict[str, str] = {}  # the same options as an earlier lever once the precision is resolved
            for i, name in enumerate(names, 1):
                serve_args = shlex.split(LEVERS[name])
                ms = model_setting(serve_args, ckpt_precision)
                same = shlex.join(without_precision(serve_args, ckpt_precision))
                if same in seen:
                    print(f"[{i}/{len(names)}] {name}: the same as {seen[same]} for this {ckpt_precision} "
                          "checkpoint", flush=True)
                    rows[name] = {**rows[seen[same]], "same_as": seen[same]}
                    continue
                seen[same] = name
                print(f"[{i}/{len(names)}] {name}: lrsa serve {LEVERS[name]} (model: {ms}) ...", flush=True)
                grid = argparse.Namespace(**{**vars(args), "warmup": args.lever_warmup,
                                             "duration": args.lever_duration})
                try:
                    row = run_setting(ckpt, serve_args, bodies, grid, Path(tmp) / f"lever-{i}.log", soak_s=0)
                except Exception as e:  # a failed setting is a result, not the end of the grid
                    row = {"serve_args": LEVERS[name], "failed": str(e)[-2000:]}
                row["model_setting"] = ms
                row["f1_change"] = 0.0 if ms == "reference" else f1.get(ms, {}).get("f1_change")
                row["test_jmasa_f1"] = f1.get(ms, {}).get("test_jmasa_f1")
                rows[name] = row
                if "load" in row:
                    x = row["load"]
                    print(f"    {x['requests_per_s']} req/s, p50 {x['latency_ms']['p50']} ms, p95 "
                          f"{x['latency_ms']['p95']} ms, {x['errors']} errors, F1 change {row['f1_change']}",
                          flush=True)
                else:
                    print(f"    failed: {row['failed'][-300:]}", flush=True)
            best, why = choose(rows, args.p95_ms, args.max_f1_loss)
            result["levers"] = rows
            result["chosen"] = {"name": best, "why": why}
            levers_out = args.out.with_name("levers.json")
            levers_out.parent.mkdir(parents=True, exist_ok=True)
            levers_out.write_text(json.dumps(result, indent=2) + "\n")
            print_levers(rows)
            if best is None:
                sys.exit(f"no setting to soak: {why}")
            print(f"chosen: {best} ({why})", flush=True)
            serve_args = shlex.split(LEVERS[best])
        else:
            serve_args = shlex.split(args.serve_args)
            best = None
        ms = model_setting(serve_args, ckpt_precision)
        print(f"service: lrsa serve {shlex.join(serve_args)}: warm-up {args.warmup:.0f} s, load "
              f"{args.duration:.0f} s, soak {args.soak:.0f} s ...", flush=True)
        run = run_setting(ckpt, serve_args, bodies, args, Path(tmp) / "service.log", soak_s=args.soak)
        run["model_setting"] = ms
        run["f1_change"] = 0.0 if ms == "reference" else f1.get(ms, {}).get("f1_change")
        run["test_jmasa_f1"] = f1.get(ms, {}).get("test_jmasa_f1")
        result["service"] = run
    result["machine"]["loadavg_at_end"] = os.getloadavg()
    result["wall_seconds"] = round(time.time() - started, 1)

    from lrsa.io import atomic_write_text

    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out, json.dumps(result, indent=2) + "\n")
    s = result["service"]
    load, soak = s["load"], s.get("soak")
    errors = load["errors"] + (soak["errors"] if soak else 0) + s["warmup"]["errors"]
    print(f"\nservice ({shlex.join(serve_args)}; {result['machine']['cpu']}, {result['machine']['cpus']} CPUs; "
          f"{result['load_generator']}):\n  {load['requests_per_s']} req/s, p50 {load['latency_ms']['p50']} ms, "
          f"p95 {load['latency_ms']['p95']} ms, p99 {load['latency_ms']['p99']} ms over {load['seconds']} s; "
          f"errors {errors}")
    if soak:
        print(f"  soak {soak['seconds']} s: {soak['requests_per_s']} req/s, p95 {soak['latency_ms']['p95']} ms; "
              f"RSS {soak['rss_mib']['after_warmup']} MiB after warm-up -> {soak['rss_mib']['at_end']} MiB at the end "
              f"({s['rss_growth_pct']:+.1f} %, peak {soak['rss_mib']['max']} MiB)")
    print(f"wrote {args.out}")
    if args.record:
        from speed_record import record

        record("service", {
            "load_generator": result["load_generator"], "requests_per_s": load["requests_per_s"],
            "p50_ms": load["latency_ms"]["p50"], "p95_ms": load["latency_ms"]["p95"],
            "p99_ms": load["latency_ms"]["p99"], "errors": errors, "concurrency": args.concurrency,
            "rss_growth_pct": s["rss_growth_pct"], "soak_s": soak["seconds"] if soak else 0,
            "soak_requests_per_s": soak["requests_per_s"] if soak else None,
            "soak_p95_ms": soak["latency_ms"]["p95"] if soak else None,
            "rss_mib": {k: v for k, v in soak["rss_mib"].items() if k != "samples"} if soak else None,
            "targets": {"requests_per_s": 60, "p95_ms": args.p95_ms, "errors": 0, "rss_growth_pct": 10},
            "meets_targets": {"requests_per_s": load["requests_per_s"] >= 60,
                              "p95_ms": load["latency_ms"]["p95"] <= args.p95_ms, "errors": errors == 0,
                              "rss_growth_pct": s["rss_growth_pct"] <= 10 if soak else None},
            "serve_args": shlex.join(serve_args), "lever": best, "model_setting": ms,
            "test_jmasa_f1": s["test_jmasa_f1"], "test_f1_change_vs_reference": s["f1_change"],
            "levers": {k: ({"same_as": r["same_as"]} if "same_as" in r else
                           {"serve_args": r["serve_args"], "requests_per_s": r["load"]["requests_per_s"],
                            "p95_ms": r["load"]["latency_ms"]["p95"], "errors": r["load"]["errors"],
                            "rss_mib_after_load": r["rss_mib_after_load"], "f1_change": r["f1_change"]}
                           if "load" in r else {"serve_args": r["serve_args"], "failed": True})
                       for k, r in result.get("levers", {}).items()},
            "checkpoint": str(args.checkpoint), "commit": result["commit"], "machine": result["machine"],
            "settings": result["settings"], "details": str(args.out.relative_to(REPO) if args.out.is_relative_to(REPO)
                                                           else args.out)}, path=args.speed_json)
        print(f"recorded the service figures in {args.speed_json}")


def print_levers(rows: dict[str, dict]) -> None:
    print(f"\n{'lever':<26} {'req/s':>7} {'p50 ms':>8} {'p95 ms':>8} {'err':>4} {'RSS MiB':>8} {'dF1':>6}  model")
    for name, r in rows.items():
        if "same_as" in r:
            print(f"{name:<26} = {r['same_as']}")
            continue
        if "load" not in r:
            print(f"{name:<26} failed")
            continue
        x = r["load"]
        d = "?" if r["f1_change"] is None else f"{r['f1_change']:+.2f}"
        print(f"{name:<26} {x['requests_per_s']:>7} {x['latency_ms']['p50']:>8} {x['latency_ms']['p95']:>8} "
              f"{x['errors']:>4} {r['rss_mib_after_load']:>8} {d:>6}  {r['model_setting']}")


# --------------------------------------------------------------------------- in-process figures (inference_speed.py)


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


if __name__ == "__main__":
    main()
