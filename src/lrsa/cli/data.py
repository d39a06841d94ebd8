"""`lrsa data ...`: list, fetch, stats and check the named benchmark datasets."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from lrsa.cli._common import DataDirOption, print_json, user_errors

data_app = typer.Typer(help="Named benchmark datasets: fetch, stats, integrity checks.",
                       no_args_is_help=True)


def _names(name: Optional[str]) -> list[str]:
    from lrsa.data.registry import DATASETS, get

    if name is None:
        return list(DATASETS)
    get(name)
    return [name]


@data_app.command("list")
def list_cmd() -> None:
    """List the named datasets, their splits and format."""
    from lrsa.data.registry import DATASETS

    for ds in DATASETS.values():
        typer.echo(f"{ds.name:22s} reader={ds.reader:8s} splits={','.join(ds.splits)} "
                   f"images={'yes' if ds.has_images else 'no'}")


@data_app.command("fetch")
def fetch_cmd(
    name: str = typer.Argument(..., help="Dataset name (see `lrsa data list`)."),
    data_dir: Optional[Path] = DataDirOption,
    mirror: Optional[Path] = typer.Option(None, "--from", help="Copy from a local mirror directory "
                                          "laid out like the data directory instead of downloading."),
) -> None:
    """Download the pinned upstream files of NAME into the data directory and verify their sha256."""
    from lrsa.data.registry import FetchError, fetch, resolve_data_dir

    with user_errors():
        try:
            done = fetch(name, data_dir, mirror)
        except FetchError as err:
            typer.echo(f"error: {err}", err=True)
            raise typer.Exit(1) from None
    from collections import Counter

    from lrsa.data.registry import get

    folder = get(name).images
    photos = Counter(how for rel, how in done if folder and rel.startswith(folder + "/"))
    for rel, how in done:
        if not (folder and rel.startswith(folder + "/")):  # the photos are summed up below, not listed
            typer.echo(f"{how:10s} {rel}")
    if photos:
        typer.echo(f"photos in {folder}/: " + ", ".join(f"{n} {how}" for how, n in sorted(photos.items())))
    typer.echo(f"{name}: {len(done)} files verified in {resolve_data_dir(data_dir)}")


@data_app.command("stats")
def stats_cmd(
    name: Optional[str] = typer.Argument(None, help="Dataset name; all datasets when omitted."),
    data_dir: Optional[Path] = DataDirOption,
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    lenient: bool = typer.Option(False, "--lenient", help="Skip malformed records, count and report "
                                 "them, instead of stopping at the first one."),
) -> None:
    """Sentences, aspects, polarity counts, multi-aspect sentences and side-input coverage per split."""
    from lrsa.data.checks import stats
    from lrsa.data.registry import get
    from lrsa.data.side import side_inputs

    out = {}
    with user_errors():
        for n in _names(name):
            side = side_inputs(n, data_dir) if get(n).side else None
            out[n] = stats(n, data_dir, side, lenient)
    if as_json:
        print_json(out[name] if name else out)
        return
    console = Console(width=160)
    for n, per_split in out.items():
        table = Table(title=n)
        cols = ["split", "sentences", "aspects", "POS", "NEU", "NEG", "multi_aspect_sentences"]
        kinds = sorted({k for row in per_split.values() for k in row.get("side_coverage", {})})
        for c in cols + kinds:
            table.add_column(c, justify="right")
        for split, row in per_split.items():
            cov = row.get("side_coverage", {})
            table.add_row(split, *(str(row[c]) for c in cols[1:]),
                          *(f"{cov[k]['covered']}/{cov[k]['of']}" for k in kinds))
        console.print(table)
        for split, row in per_split.items():
            if row.get("skipped"):
                typer.echo(f"{n} {split}: skipped {row['skipped']} malformed record(s):")
                for reason in row["skip_reasons"]:
                    typer.echo(f"  {reason}")


@data_app.command("check")
def check_cmd(
    name: Optional[str] = typer.Argument(None, help="Dataset name; all datasets when omitted."),
    data_dir: Optional[Path] = DataDirOption,
    as_json: bool = typer.Option(False, "--json", help="Print the full JSON report."),
) -> None:
    """Duplicates inside a split, overlaps between splits and with other datasets, label conflicts."""
    from lrsa.data.checks import check

    with user_errors():
        loaded: dict = {}  # each dataset's files are read once across all the checks
        reports = {n: check(n, data_dir, loaded=loaded) for n in _names(name)}
    if as_json:
        print_json(reports[name] if name else reports)
        return
    for n, r in reports.items():
        s = r["summary"]
        typer.echo(f"{n}: {s['duplicates_within_split']} duplicate(s) within a split, "
                   f"{s['overlap_between_splits']} post(s) shared between splits, "
                   f"{s['overlap_with_other_datasets']} post(s) shared with other datasets, "
                   f"{s['conflicting_labels']} label conflict(s)")
        for d in r["duplicates_within_split"]:
            typer.echo(f"  duplicate in {d['split']}: {', '.join(d['ids'])} (image {d['image_id']})")
        for d in r["overlap_between_splits"]:
            typer.echo(f"  shared between {'/'.join(d['splits'])}: {', '.join(d['ids'])} "
                       f"(image {d['image_id']})")
        for d in r["overlap_with_other_datasets"]:
            typer.echo(f"  {d['split']}: {d['count']} post(s) also in {d['other']} {d['other_split']}"
                       + (f" ({d['labels_differ']} with different labels)" if d["labels_differ"] else ""))
        for c in r["conflicting_labels"]:
            typer.echo(f"  conflicting labels: {', '.join(c['ids'])}")
        for w in r["warnings"]:
            typer.echo(f"  warning: {w}")


def register(app: typer.Typer) -> None:
    app.add_typer(data_app, name="data")
