"""The `lrsa` command. Each stage registers its commands from its own module; no logic lives here.

Heavy imports (torch, transformers) happen inside the commands, so `lrsa --help` stays instant.
"""

from __future__ import annotations

import typer

from lrsa.cli import data, model, rationales, score, serve

app = typer.Typer(
    name="lrsa",
    help="Multimodal aspect-based sentiment analysis with LLM-generated rationales.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

for module in (data, score, rationales, model, serve):
    module.register(app)


def main() -> None:
    app()
