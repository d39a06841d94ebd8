"""`lrsa train`, `lrsa evaluate`, `lrsa predict`, `lrsa reproduce`: the model stage's commands."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import List, Optional

import typer

from lrsa.cli._common import DataDirOption, print_json, user_errors

CacheOption = typer.Option(None, "--cache-dir", help="Cache of frozen side-text states "
                           "(default: <runs>/cache for train/reproduce, none for predict).")
PrecisionOption = typer.Option(None, "--precision", help="fp32 or bf16 (autocast; fast on CPUs with AMX / "
                               "AVX512-BF16 and on GPUs). Default: the precision the checkpoint was trained in.")


def _set(values: list[str]) -> dict:
    out = {}
    for item in values:
        if "=" not in item:
            raise ValueError(f"--set {item!r}: expected KEY=VALUE, e.g. train.seed=1")
        k, v = item.split("=", 1)
        try:
            out[k] = json.loads(v)
        except json.JSONDecodeError:
            out[k] = v
    return out


def train_cmd(
    config: Path = typer.Option(..., "--config", help="Run config (YAML/JSON), e.g. configs/twitter2015.yaml."),
    out: Optional[Path] = typer.Option(None, "--out", help="Run directory (default: runs/<config name>)."),
    set_: List[str] = typer.Option([], "--set", help="Override a field: --set train.seed=1 --set model.host=generative"),
    devices: Optional[int] = typer.Option(None, "--devices", min=1, help="Processes on this machine (DDP "
                                          "when more than one; train.batch_size stays the global batch)."),
    num_nodes: Optional[int] = typer.Option(None, "--num-nodes", min=1, help="Machines of a multi-node run "
                                            "(launch with torchrun; docs/training.md)."),
    strategy: str = typer.Option("auto", "--strategy", help="auto (DDP when devices x nodes > 1) or ddp."),
    accelerator: Optional[str] = typer.Option(None, "--accelerator", help="auto (CUDA when present), cpu "
                                              "or cuda."),
    data_dir: Optional[Path] = DataDirOption,
    cache_dir: Optional[Path] = CacheOption,
) -> None:
    """Train a model (dev-selected; resumes if the run directory holds an interrupted run)."""
    from lrsa.config import load_config
    from lrsa.training.loop import train

    with user_errors():
        if strategy not in ("auto", "ddp"):
            raise ValueError(f"--strategy {strategy!r}: auto or ddp (DistributedDataParallel through "
                             "Lightning Fabric)")
        where = {f"train.{k}": v for k, v in (("devices", devices), ("num_nodes", num_nodes),
                                               ("accelerator", accelerator)) if v is not None}
        run = load_config(config, {**_set(set_), **where})
        out = out or Path("runs") / run.name
        result = train(run, out, data_dir=data_dir, cache_dir=cache_dir or Path("runs") / "cache",
                       log=typer.echo)
    if os.environ.get("LOCAL_RANK", "0") != "0" or os.environ.get("NODE_RANK", "0") != "0":
        return  # another process of a DDP run: rank 0 reports
    t = result.get("test")
    typer.echo(f"checkpoint: {out / 'best'}")
    if t and run.model.task == "masc":
        typer.echo(f"test MASC acc {t['masc']['acc']:.2f}  macro-F1 {t['masc']['macro_f1']:.2f}")
    elif t:
        typer.echo(f"test JMASA F1 {t['jmasa']['f1']:.2f}  MATE F1 {t['mate']['f1']:.2f}")


def evaluate_cmd(
    checkpoint: Path = typer.Option(..., "--checkpoint", help="Checkpoint directory (or a run directory)."),
    dataset: str = typer.Option(..., "--dataset", help="Named dataset."),
    split: str = typer.Option("test", "--split"),
    out: Optional[Path] = typer.Option(None, "--out", help="Predictions JSONL (default: "
                                       "runs/evaluate/<run name>/predictions_<dataset>_<split>.jsonl)."),
    limit: Optional[int] = typer.Option(None, "--limit", help="First N sentences only."),
    data_dir: Optional[Path] = DataDirOption,
    cache_dir: Optional[Path] = CacheOption,
    without_image: bool = typer.Option(False, "--without-image", help="Every post as if it had no image "
                                       "(V and L_i empty): how the model does on text-only posts."),
    precision: Optional[str] = PrecisionOption,
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Predict a benchmark split, write the predictions JSONL and print the scores."""
    from lrsa.api import LRSA
    from lrsa.training.evaluate import write_predictions

    with user_errors():
        model = LRSA.from_pretrained(checkpoint, cache_dir=cache_dir, precision=precision)
        ev = model.evaluate_split(dataset, split, data_dir=data_dir, limit=limit,
                                  log=lambda m: typer.echo(m, err=True), progress=not as_json,
                                  without_image=without_image)
        dest = out or Path("runs") / "evaluate" / model.run.name / (
            f"predictions_{dataset}_{split}" + ("_without_image" if without_image else "") + ".jsonl")
        write_predictions(ev["predictions"], dest)
    s = ev["scores"]
    if as_json:
        print_json(s)
        return
    typer.echo(f"predictions: {dest}")
    if model.run.model.task == "masc":  # an aspect-host checkpoint: the aspects were given
        typer.echo(f"MASC   acc {s['masc']['acc']:.2f}  macro-F1 {s['masc']['macro_f1']:.2f}")
    else:
        typer.echo(f"JMASA  P {s['jmasa']['p']:.2f}  R {s['jmasa']['r']:.2f}  F1 {s['jmasa']['f1']:.2f}")
        typer.echo(f"MATE   P {s['mate']['p']:.2f}  R {s['mate']['r']:.2f}  F1 {s['mate']['f1']:.2f}")
        if s.get("masc_forced"):
            typer.echo(f"sentiment on forced gold spans (not MASC; docs/metrics.md)  acc "
                       f"{s['masc_forced']['acc']:.2f}  macro-F1 {s['masc_forced']['macro_f1']:.2f}")
    typer.echo(f"{s['examples_per_s']} sentences/s")


def predict_cmd(
    checkpoint: Path = typer.Option(..., "--checkpoint"),
    text: Optional[str] = typer.Option(None, "--text", help="One post (or --input for a JSONL file)."),
    input_file: Optional[Path] = typer.Option(None, "--input", help="JSONL of posts ({id, text, image, "
                                              "image_text, aspects}): streamed, resumable; needs --out."),
    out: Optional[Path] = typer.Option(None, "--out", help="Predictions JSONL for --input (appended; a rerun "
                                       "skips the posts already in it)."),
    batch_size: int = typer.Option(64, "--batch-size", help="Posts per batch with --input."),
    workers: int = typer.Option(1, "--workers", min=1, help="With --input: processes predicting batches in "
                                "parallel (each loads the model; output stays in input order)."),
    worker_threads: int = typer.Option(1, "--worker-threads", min=1, help="torch threads per --workers process."),
    lenient: bool = typer.Option(False, "--lenient", help="With --input: write an error line for a bad post "
                                 "and go on (counted), instead of stopping at it."),
    image: Optional[Path] = typer.Option(None, "--image", help="Image file."),
    image_text: Optional[str] = typer.Option(None, "--image-text", help="Caption / description of the image "
                                             "(what image-as-text models read)."),
    aspect: List[str] = typer.Option([], "--aspect", help="A given aspect (repeatable; MASC checkpoints, "
                                     "host: aspect): its words as they occur in the text."),
    no_rationales: bool = typer.Option(False, "--no-rationales", help="Predict without rationales."),
    explain: bool = typer.Option(False, "--explain", help="What each aspect leaned on (tweet words, image side, "
                                 "L_t, L_i) and the rationale words that mattered (with --input: an "
                                 "`attribution` per aspect in --out); slower: each post is scored again once "
                                 "per input."),
    backend: Optional[str] = typer.Option(
        None, "--rationale-backend", "--rationales",
        help="A substitute rationale writer for both parts: lexicon (instant), local (Qwen2.5-Coder-0.5B via "
             "llama.cpp; a few seconds per post on 2 cores), openai, import. Default: the writers the model was "
             "trained with; a part whose writer cannot run here (e.g. the published MiniGPT-4 descriptions) is "
             "left empty, and the output says so."),
    precision: Optional[str] = PrecisionOption,
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Print each aspect (found, or given with --aspect), its sentiment and the rationales used; with
    --input, predict a JSONL file of posts into --out (streamed, resumable, progress and throughput)."""
    from lrsa.api import LRSA

    if (text is None) == (input_file is None):
        typer.echo("error: give --text (one post) or --input (a JSONL file of posts)", err=True)
        raise typer.Exit(2)
    if input_file is not None and out is None:
        typer.echo("error: --input needs --out (the predictions JSONL)", err=True)
        raise typer.Exit(2)
    with user_errors():
        model = LRSA.from_pretrained(checkpoint, rationale_backend=backend, precision=precision)
        if input_file is not None:
            from lrsa.serving.files import predict_file

            summary = predict_file(model, input_file, out, batch_size=batch_size, lenient=lenient,
                                   use_rationales=not no_rationales, progress=not as_json,
                                   log=lambda m: typer.echo(m, err=True), workers=workers,
                                   worker_threads=worker_threads, explain=explain)
            if as_json:
                print_json(summary)
            if summary["errors"]:
                raise typer.Exit(1)  # lenient: the errors are lines in --out, and the exit code says so
            return
        pred = model.predict(text, image=str(image) if image else None, image_text=image_text,
                             aspects=list(aspect) or None, use_rationales=not no_rationales, explain=explain)
    if as_json:
        print_json(pred.model_dump())
        return
    if not pred.aspects:
        typer.echo("no aspects found")
    for a in pred.aspects:
        typer.echo(f"{a.text!r} [{a.start}:{a.end}] chars {a.char_start}-{a.char_end}  {a.polarity}  "
                   f"(confidence {a.confidence:.2f})")
        if a.attribution is not None:
            from lrsa.model.attribution import describe

            for line in describe(a.attribution.model_dump()):
                typer.echo(f"    {line}")
    if pred.rationale is not None:
        for part, label, value in (("text", "text rationale (L_t)", pred.rationale.text),
                                   ("image", "image rationale (L_i)", pred.rationale.image)):
            who = pred.rationale_writers.get(part)
            by = f" [{'substitute: ' if who.substitute else ''}{who.writer or 'no writer here'}]" if who else ""
            typer.echo(f"{label}{by}: {value or '(empty)'}")
        typer.echo(f"rationale provenance: {json.dumps(pred.rationale.provenance, sort_keys=True)}")
    else:
        typer.echo("rationales: not used")
    for note in pred.notes:
        typer.echo(f"note: {note}")
    typer.echo("timings (ms): " + ", ".join(f"{k} {v:.1f}" for k, v in pred.timings_ms.items()))


def reproduce_cmd(
    profile: str = typer.Option("main", "--profile", help="main (the main job: text and lrsa on full "
                                "Twitter-2015, one seed), full (the table on the all-layer host, results/), top2 "
                                "(the first tables, top 2 layers tuned, results/top2/) or smoke (subsets)."),
    datasets: List[str] = typer.Option([], "--datasets", help="Restrict to these datasets (repeatable)."),
    hosts: List[str] = typer.Option([], "--hosts", help="span, generative and/or aspect (MASC)."),
    variants: List[str] = typer.Option([], "--variants", help="text, image, concat, lrsa, lrsa_li."),
    tasks: List[str] = typer.Option([], "--task", help="jmasa and/or masc (default: every row)."),
    rationales: List[str] = typer.Option([], "--rationales", help="rows with these rationale sources "
                                         "(arkmsa, arkmsa-aspect, gpt4, lexicon, none)."),
    seeds: Optional[int] = typer.Option(None, "--seeds", help="At most N seeds per row."),
    max_runs: Optional[int] = typer.Option(None, "--max-runs", help="Train at most N new runs, then report."),
    runs: Path = typer.Option(Path("runs/reproduce"), "--runs", help="Where runs are stored."),
    results: Optional[Path] = typer.Option(None, "--results", help="Report folder (default: results/ for "
                                           "full, results/top2/ for top2, <runs>/<profile>/ otherwise)."),
    threads: Optional[int] = typer.Option(None, "--threads", help="torch threads per run."),
    redo_legacy: bool = typer.Option(False, "--redo-legacy", help="Retrain runs whose records are legacy "
                                     "(kept from a report, without per-item counts)."),
    encode_only: bool = typer.Option(False, "--encode-only", help="Only compute the runs' frozen side-text "
                                     "states (train, dev, test) into the cache, training nothing: run it beside "
                                     "other rows' training so that the rationale rows find them (scripts/main.sh)."),
    data_dir: Optional[Path] = DataDirOption,
    cache_dir: Optional[Path] = CacheOption,
) -> None:
    """Run the ablation tables (JMASA and MASC rows of the profile); resumable per run, one worker per core."""
    from lrsa.training.reproduce import PROFILES, reproduce

    def split(vals: list[str]) -> list[str] | None:
        out = [x for v in vals for x in v.split(",") if x]
        return out or None

    with user_errors():
        if profile not in PROFILES:
            raise ValueError(f"unknown profile {profile!r}; known: {', '.join(PROFILES)}")
        paths = reproduce(profile, runs=runs, results=results, datasets=split(datasets), hosts=split(hosts),
                          variants=split(variants), tasks=split(tasks), rationales=split(rationales), seeds=seeds,
                          max_runs=max_runs, data_dir=data_dir, cache_dir=cache_dir, threads=threads,
                          redo_legacy=redo_legacy, encode_only=encode_only, log=typer.echo)
    for p in paths.values():
        typer.echo(p.read_text())


def register(app: typer.Typer) -> None:
    app.command("train")(train_cmd)
    app.command("evaluate")(evaluate_cmd)
    app.command("predict")(predict_cmd)
    app.command("reproduce")(reproduce_cmd)
