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



@app.callback()
def _options(verbose: bool = typer.Option(False, "--verbose", "-v", help="Show the libraries' own progress bars "
                                          "and messages (e.g. transformers' weight loading).")) -> None:
    """Multimodal aspect-based sentiment analysis with LLM-generated rationales."""
    if not verbose:
        import os

        # read by huggingface_hub and transformers when they are imported (inside the commands); the
        # commands' own progress (training, evaluation, prediction) is shown either way
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


for module in (data, score, rationales, model, serve):
    module.register(app)


def main() -> None:
    app()
