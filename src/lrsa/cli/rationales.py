"""`lrsa rationales ...`: generate, show, export and import rationales (L_t, L_i)."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path
from typing import Optional

import typer

rationales_app = typer.Typer(help="LLM rationales: generate (cached, resumable), show, export, import.",
                             no_args_is_help=True)


def default_cache_path() -> Path:
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("lrsa")) / "rationales.sqlite"


def _splits(dataset: str, split: str) -> list[str]:
    from lrsa.data.registry import get

    ds = get(dataset)
    if split == "all":
        return list(ds.splits)
    for s in split.split(","):
        if s not in ds.splits:
            raise typer.BadParameter(f"dataset {dataset!r} has no split {s!r}; it has {', '.join(ds.splits)}")
    return split.split(",")


def _backend_options(backend: str, **kw) -> dict:
    opts = {k: v for k, v in kw.items() if v is not None}
    return opts


@rationales_app.command()
def generate(
    dataset: Optional[str] = typer.Option(None, help="named dataset, e.g. twitter2015"),
    input: Optional[Path] = typer.Option(None, "--input",
                                         help="your posts instead: JSONL {id, text, image?, image_texts?}"),
    split: str = typer.Option("all", help="split name, comma list, or 'all'"),
    chunk_size: int = typer.Option(5000, help="--input: posts held in memory at once"),
    backend: str = typer.Option("lexicon", help="openai | local | lexicon | import"),
    limit: Optional[int] = typer.Option(None, help="only the first N posts (in split order)"),
    concurrency: Optional[int] = typer.Option(
        None, help="requests in flight at once [default: 8; local: its batch size]"),
    cache: Optional[Path] = typer.Option(None, help="SQLite cache file [default: user cache dir]"),
    report: Optional[Path] = typer.Option(None, help="also save the JSON report here"),
    out: Optional[Path] = typer.Option(None, help="write the rationales as JSONL (.jsonl or .jsonl.gz)"),
    bundle: bool = typer.Option(False, help="write artifacts/rationales/<dataset>/<source>.jsonl.gz + manifest"),
    source: Optional[str] = typer.Option(None, help="bundle source name [default: the backend name]"),
    bundle_root: Optional[Path] = typer.Option(None, help="bundle root [default: artifacts/rationales]"),
    data_dir: Optional[Path] = typer.Option(None, help="benchmark data dir [default: $LRSA_DATA_DIR]"),
    max_tokens: int = typer.Option(160, help="cap on each cleaned rationale, in regex word tokens"),
    model: Optional[str] = typer.Option(None, help="openai: model name; local: qwen2.5-coder-0.5b (default), "
                                                   "qwen2.5-coder-1.5b, smollm2-135m or a .gguf path"),
    runtime: Optional[str] = typer.Option(None, help="local: llama.cpp (default) or transformers"),
    n_parallel: Optional[int] = typer.Option(None, help="local llama.cpp: sequences decoded together [32]"),
    prompt_version: Optional[str] = typer.Option(None, help="prompt templates version [openai v1, local v2]"),
    kinds: str = typer.Option("text,image", help="parts to generate: text (L_t), image (L_i) or both"),
    image_from: Optional[str] = typer.Option(
        None, help="--bundle: take L_i from this existing bundle of the dataset (e.g. arkmsa, gpt4) and "
                   "generate only L_t"),
    base_url: Optional[str] = typer.Option(None, help="openai: endpoint, e.g. https://api.openai.com/v1"),
    api_key_env: Optional[str] = typer.Option(None, help="openai: env variable holding the API key"),
    vision: Optional[bool] = typer.Option(None, help="openai: the model reads images (sent as data URLs)"),
    timeout: Optional[float] = typer.Option(None, help="openai: per-request timeout, seconds"),
    retries: Optional[int] = typer.Option(None, help="openai: retries on 429/5xx/timeouts"),
    rpm: Optional[float] = typer.Option(None, help="openai: requests-per-minute limit"),
    temperature: Optional[float] = typer.Option(None, help="decoding temperature (0 = greedy)"),
    max_new_tokens: Optional[int] = typer.Option(None, help="LLM decoding limit, in model tokens"),
    batch_size: Optional[int] = typer.Option(None, help="local: prompts generated together"),
    threads: Optional[int] = typer.Option(None, help="local: CPU threads"),
    import_file: Optional[Path] = typer.Option(None, help="import: JSONL with {id, text?, image?}"),
    price_prompt: Optional[float] = typer.Option(None, help="USD per 1M prompt tokens (cost estimate)"),
    price_completion: Optional[float] = typer.Option(None, help="USD per 1M completion tokens"),
    progress: bool = typer.Option(True, help="show a progress bar"),
) -> None:
    """Generate rationales for a dataset or a JSONL of posts; only parts missing from the cache are requested."""
    import time

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from lrsa.rationales import RationaleCache, dataset_inputs, make_backend, write_bundle
    from lrsa.rationales.generate import generate as run

    if (dataset is None) == (input is None):
        raise typer.BadParameter("give exactly one of --dataset NAME or --input FILE")
    if input is not None and bundle:
        raise typer.BadParameter("--bundle is for named datasets; use --out with --input")
    splits: list[str] = []
    inputs: list = []
    if dataset is not None:
        splits = _splits(dataset, split)
        inputs = dataset_inputs(dataset, splits, data_dir)
        if limit is not None:
            inputs = inputs[:limit]
    opts = _backend_options(backend, model=model, base_url=base_url, api_key_env=api_key_env, vision=vision,
                            timeout_s=timeout, max_retries=retries, rpm=rpm, temperature=temperature,
                            max_new_tokens=max_new_tokens, batch_size=batch_size, threads=threads,
                            file=import_file, runtime=runtime, n_parallel=n_parallel,
                            prompt_version=prompt_version)
    part_kinds = tuple(k.strip() for k in kinds.split(",") if k.strip())
    if not part_kinds or any(k not in ("text", "image") for k in part_kinds):
        raise typer.BadParameter(f"--kinds takes text, image or text,image, not {kinds!r}")
    if image_from is not None:
        if not bundle or dataset is None:
            raise typer.BadParameter("--image-from composes a bundle: use it with --dataset and --bundle")
        part_kinds = ("text",)
        from lrsa.rationales.bundle import load_bundle

        # a missing or aspect-level L_i source fails now, not after the generation it is joined to (compose_image
        # loads it again at the end: 0.07 s, against reading it here and holding it through a long run)
        load_bundle(dataset, image_from, bundle_root)
    be = make_backend(backend, **opts)
    if concurrency is None:
        concurrency = getattr(be, "batch_size", 8)
    store = None
    if be.cacheable:
        cache = cache or default_cache_path()
        store = RationaleCache(cache)
        typer.echo(f"cache: {cache} ({len(store)} entries)", err=True)
    previous = _previous_bundle(dataset, source or backend, bundle_root, be) if bundle and dataset else None
    if previous is not None and store is not None:
        from lrsa.rationales.generate import seed_cache

        n = seed_cache(inputs, be, store, previous[0], part_kinds)
        typer.echo(f"resuming from the existing {source or backend} bundle: {n} parts taken into the cache", err=True)
    prices = None
    if price_prompt is not None or price_completion is not None:
        prices = {"prompt": price_prompt or 0.0, "completion": price_completion or 0.0}
    if input is not None:
        _generate_stream(input, be, store, out, report, limit, chunk_size, concurrency, max_tokens, prices,
                         progress, part_kinds)
        return
    t0 = time.time()
    with Progress(TextColumn(f"{dataset} {backend}"), BarColumn(), MofNCompleteColumn(),
                  TimeRemainingColumn(), console=Console(stderr=True), disable=not progress,
                  transient=False) as bar:
        task = bar.add_task("parts", total=None)

        def on_progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        res = run(inputs, be, cache=store, concurrency=concurrency, max_tokens=max_tokens,
                  on_progress=on_progress, prices=prices, kinds=part_kinds)
    elapsed = time.time() - t0
    if store is not None:
        store.close()
    rep = res.report.to_dict()
    rep.update({"dataset": dataset, "splits": splits})
    typer.echo(json.dumps(rep, indent=2))
    if report:
        res.report.save(report)
    if out:
        _write_jsonl(out, res.records(full_provenance=True))
    if bundle:
        if res.missing:
            typer.echo(f"not writing a bundle: {len(res.missing)} posts are missing parts "
                       f"(rerun to retry them)", err=True)
            raise typer.Exit(1)
        cmd = "lrsa rationales generate " + " ".join(shlex.quote(a) for a in sys.argv[2 + sys.argv[1:].index("generate"):]) \
            if "generate" in sys.argv else None
        records, prov = res.records(), be.provenance()
        if image_from is not None:
            from lrsa.rationales.bundle import compose_image

            records, prov = compose_image(dataset, records, prov, image_from, root=bundle_root)
        keys = ("requested", "generated", "cached", "failed", "retried", "prompt_tokens", "completion_tokens",
                "flagged")
        report_now = {k: rep[k] for k in keys}
        if previous is not None:  # the bundle grows: records of other splits are kept, the cost adds up
            from lrsa.rationales.bundle import grow

            records, report_now, elapsed = grow(records, report_now, elapsed, *previous,
                                                _dataset_ids(dataset, data_dir))
        path = write_bundle(dataset, source or backend, records, prov, root=bundle_root,
                            generation_s=elapsed, command=cmd, extra={"report": report_now})
        typer.echo(f"bundle: {path} ({path.stat().st_size} bytes)", err=True)
    if res.missing:
        raise typer.Exit(2)


def _previous_bundle(dataset: str, source: str, root: Optional[Path], backend) -> Optional[tuple]:
    """(records, manifest entry) of an existing bundle written by the same backend, model, prompts and
    settings, or None (no bundle, or one written differently: it is then replaced, not grown)."""
    from lrsa.rationales.bundle import bundle_path, load_bundle, read_manifest
    from lrsa.rationales.generate import same_outputs

    entry = read_manifest(dataset, root).get("sources", {}).get(source)
    if not entry or not bundle_path(dataset, source, root).is_file() \
            or not same_outputs(entry.get("provenance", {}), backend.provenance()):
        return None
    return load_bundle(dataset, source, root, level=entry["provenance"].get("level", "tweet")), entry


def _dataset_ids(dataset: str, data_dir: Optional[Path]) -> list[str]:
    from lrsa.data.registry import get, load_dataset

    return [ex.id for s in get(dataset).splits for ex in load_dataset(dataset, s, data_dir)]


def _generate_stream(input: Path, be, store, out: Optional[Path], report: Optional[Path], limit: Optional[int],
                     chunk_size: int, concurrency: int, max_tokens: int, prices, progress: bool,
                     kinds: tuple[str, ...] = ("text", "image")) -> None:
    """--input: stream posts through the runner in chunks; --out is written as it goes, then renamed."""
    import gzip
    import itertools
    import os

    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn

    from lrsa.rationales.generate import generate_stream
    from lrsa.rationales.inputs import read_posts

    posts = read_posts(input)
    if limit is not None:
        posts = itertools.islice(posts, limit)
    tmp = None
    fh = None
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f".{out.name}.part")
        fh = gzip.open(tmp, "wt", encoding="utf-8") if str(out).endswith(".gz") else open(tmp, "w", encoding="utf-8")
    missing = 0
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), console=Console(stderr=True),
                  disable=not progress) as bar:
        task = bar.add_task(f"{input.name}: 0 posts")
        posts_done = 0

        def sink(res) -> None:
            nonlocal missing, posts_done
            missing += len(res.missing)
            posts_done += res.report.items
            if fh is not None:
                for r in res.records(full_provenance=True):
                    fh.write(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n")
            bar.update(task, description=f"{input.name}: {posts_done} posts")

        try:
            rep = generate_stream(posts, be, sink, chunk_size=chunk_size, cache=store, concurrency=concurrency,
                                  max_tokens=max_tokens, prices=prices, kinds=kinds)
        finally:
            if fh is not None:
                fh.close()
            if store is not None:
                store.close()
    if tmp is not None:
        os.replace(tmp, out)
        typer.echo(f"wrote {rep.complete_items} records to {out}", err=True)
    typer.echo(json.dumps({**rep.to_dict(), "input": str(input)}, indent=2))
    if report:
        rep.save(report)
    if missing:
        raise typer.Exit(2)


def _write_jsonl(path: Path, records: list[dict]) -> None:
    import gzip

    from lrsa.io import atomic_write_bytes

    data = "".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in records).encode("utf-8")
    if str(path).endswith(".gz"):
        data = gzip.compress(data, mtime=0)
    atomic_write_bytes(path, data)
    typer.echo(f"wrote {len(records)} records to {path}", err=True)


@rationales_app.command()
def show(
    dataset: str = typer.Option(..., help="named dataset"),
    id: str = typer.Argument(..., help="example id, e.g. test-12"),
    source: str = typer.Option("lexicon", help="bundle source"),
    bundle_root: Optional[Path] = typer.Option(None, help="bundle root [default: artifacts/rationales]"),
    data_dir: Optional[Path] = typer.Option(None, help="benchmark data dir (to print the tweet)"),
) -> None:
    """Print the tweet and its rationales from a bundle, and which source each part came from."""
    from lrsa.rationales import load_bundle
    from lrsa.rationales.bundle import read_manifest

    entry = read_manifest(dataset, bundle_root).get("sources", {}).get(source, {})
    level = entry.get("provenance", {}).get("level", "tweet")
    rats = load_bundle(dataset, source, bundle_root, level=level)
    if id not in rats:
        hint = " (aspect-level ids look like test-12@3:5)" if level == "aspect" else ""
        raise typer.BadParameter(f"no id {id!r} in the {source} bundle of {dataset} ({len(rats)} ids){hint}")
    r = rats[id]
    sentence = id.split("@", 1)[0]
    try:
        from lrsa.rationales.inputs import dataset_inputs

        split = sentence.rsplit("-", 1)[0]
        text = next(i.text for i in dataset_inputs(dataset, [split], data_dir) if i.id == sentence)
        typer.echo(f"tweet: {text}")
    except (FileNotFoundError, StopIteration):
        pass
    p = r.provenance
    t_src = p.get("text_source", p.get("backend", source))
    i_src = p.get("image_source", p.get("backend", source))
    typer.echo(f"L_t ({t_src}):   {r.text}\nL_i ({i_src}):   {r.image}\n"
               f"provenance: {json.dumps(p, indent=2)}")


@rationales_app.command("export")
def export_cmd(
    dataset: str = typer.Option(..., help="named dataset"),
    out: Path = typer.Option(..., help="JSONL file to write (.jsonl or .jsonl.gz)"),
    source: str = typer.Option("lexicon", help="bundle source to export"),
    bundle_root: Optional[Path] = typer.Option(None, help="bundle root [default: artifacts/rationales]"),
) -> None:
    """Export a bundle as JSONL: one {"id", "text", "image", "provenance"} object per line."""
    from lrsa.rationales import load_bundle

    rats = load_bundle(dataset, source, bundle_root)
    _write_jsonl(out, [{"id": k, "text": r.text, "image": r.image, "provenance": r.provenance}
                       for k, r in rats.items()])


@rationales_app.command("import")
def import_cmd(
    file: Path = typer.Argument(..., help="JSONL with {id, text?, image?} per line"),
    dataset: str = typer.Option(..., help="named dataset the ids belong to"),
    source: str = typer.Option(..., help="bundle source name to create, e.g. gemini"),
    model: str = typer.Option("unknown", help="the model that wrote them (provenance)"),
    prompt: Optional[str] = typer.Option(None, help="prompt version/hash they were written with"),
    bundle_root: Optional[Path] = typer.Option(None, help="bundle root [default: artifacts/rationales]"),
    data_dir: Optional[Path] = typer.Option(None, help="benchmark data dir (to check ids)"),
    partial: bool = typer.Option(False, help="allow ids of only some posts"),
) -> None:
    """Import your own rationales (e.g. from a paid LLM run) as a bundle usable by training."""
    from lrsa.data.registry import get, load_dataset
    from lrsa.rationales import write_bundle
    from lrsa.rationales.backends import read_jsonl

    recs = read_jsonl(file)
    known = [ex.id for s in get(dataset).splits for ex in load_dataset(dataset, s, data_dir)]
    unknown = sorted(set(recs) - set(known))
    if unknown:
        raise typer.BadParameter(f"{file}: {len(unknown)} ids not in {dataset}, e.g. {unknown[:3]}")
    lacking = [k for k in known if k not in recs]
    if lacking and not partial:
        raise typer.BadParameter(f"{file}: {len(lacking)} posts of {dataset} have no record, e.g. "
                                 f"{lacking[:3]} (pass --partial to allow)")
    records = [{"id": k, "text": recs[k].get("text", ""), "image": recs[k].get("image", "")}
               for k in known if k in recs]
    path = write_bundle(dataset, source, records, {"backend": "import", "model": model, "prompt": prompt,
                                                   "imported_from": file.name}, root=bundle_root)
    typer.echo(f"bundle: {path} ({len(records)} records)")


@rationales_app.command("import-published")
def import_published_cmd(
    dataset: str = typer.Option(..., help="twitter2015, twitter2017 or political_twitter"),
    source: str = typer.Option(..., help="arkmsa (tweet level), arkmsa-aspect (aspect level, MASC only), "
                                         "gpt4 (Twitter-2017 images)"),
    bundle_root: Optional[Path] = typer.Option(None, help="bundle root [default: artifacts/rationales]"),
    data_dir: Optional[Path] = typer.Option(None, help="benchmark data dir [default: $LRSA_DATA_DIR]"),
) -> None:
    """Build a bundle from rationales that LLMs wrote for the benchmarks (read from the data directory)."""
    from lrsa.rationales.published import import_published

    path, cov = import_published(dataset, source, data_dir, bundle_root,
                                 command=f"lrsa rationales import-published --dataset {dataset} --source {source}")
    miss = ", ".join(f"{k} {v}" for k, v in cov["missing"].items())
    typer.echo(f"bundle: {path} ({cov['records']} records; missing: {miss})")


@rationales_app.command("report")
def report_cmd(
    dataset: str = typer.Option(..., help="named dataset"),
    source: list[str] = typer.Option([], help="bundle sources to compare (repeatable) [default: every bundle]"),
    out_dir: Path = typer.Option(Path("results/rationales/quality"), help="writes <dataset>.json and .md"),
    data_dir: Optional[Path] = typer.Option(None, help="benchmark data dir [default: $LRSA_DATA_DIR]"),
    bundle_root: Optional[Path] = typer.Option(None, help="bundle root [default: artifacts/rationales]"),
) -> None:
    """Quality report of rationale bundles on the dev split: length, aspects named, unsupported entities,
    stated sentiment vs gold, cost (a diagnostic; never an input to training)."""
    from lrsa.io import atomic_write_json, atomic_write_text
    from lrsa.rationales.bundle import available_sources
    from lrsa.rationales.quality import markdown, quality

    sources = source or available_sources(dataset, bundle_root)
    reports = [quality(dataset, s, data_dir, bundle_root) for s in sources]
    atomic_write_json(out_dir / f"{dataset}.json", {"dataset": dataset, "split": "dev", "sources": reports})
    md = (f"# Rationale quality on {dataset} dev\n\nWritten by `lrsa rationales report --dataset {dataset}`; "
          "definitions in `lrsa/rationales/quality.py`. A diagnostic only: nothing here feeds a model.\n\n"
          + markdown(reports))
    atomic_write_text(out_dir / f"{dataset}.md", md)
    typer.echo(md)


def register(app: typer.Typer) -> None:
    app.add_typer(rationales_app, name="rationales")
