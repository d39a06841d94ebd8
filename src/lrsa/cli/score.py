"""`lrsa score`: score a predictions JSONL file against a named dataset split."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from lrsa.cli._common import DataDirOption, print_json, user_errors


def score_cmd(
    gold: str = typer.Option(..., "--gold", help="Named dataset (see `lrsa data list`)."),
    split: str = typer.Option("test", "--split", help="train, dev or test."),
    pred: Path = typer.Option(..., "--pred", help="Predictions JSONL (docs/metrics.md)."),
    data_dir: Optional[Path] = DataDirOption,
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """JMASA P/R/F1, MATE P/R/F1, MASC accuracy / macro-F1 and joint MASC accuracy, in percent."""
    from lrsa.data.registry import load_dataset
    from lrsa.training.metrics import read_predictions, score

    with user_errors():
        gold_examples = load_dataset(gold, split, data_dir)
        if not pred.exists():
            raise FileNotFoundError(f"{pred}: predictions file not found")
        result = score(gold_examples, read_predictions(pred, gold_examples))
    if as_json:
        print_json(result)
        return
    j, m = result["jmasa"], result["mate"]
    typer.echo(f"JMASA  P {j['p']:.2f}  R {j['r']:.2f}  F1 {j['f1']:.2f}")
    typer.echo(f"MATE   P {m['p']:.2f}  R {m['r']:.2f}  F1 {m['f1']:.2f}")
    if result["masc"]:
        typer.echo(f"MASC   acc {result['masc']['acc']:.2f}  macro-F1 {result['masc']['macro_f1']:.2f}")
    else:
        typer.echo("MASC   n/a (the predictions do not give a polarity for every gold aspect)")
    typer.echo(f"MASC (joint, over {result['masc_joint']['n']} correctly extracted spans) "
               f"acc {result['masc_joint']['acc']:.2f}")
    if result["missing"]:
        typer.echo(f"note: {result['missing']} of {result['sentences']} sentences missing from the "
                   f"predictions, scored as empty")


def register(app: typer.Typer) -> None:
    app.command("score")(score_cmd)
