"""`lrsa serve`: the HTTP service and web page around a trained checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)


def serve(
    checkpoint: Path = typer.Option(..., "--checkpoint", help="A directory written by save_pretrained."),
    host: str = typer.Option("127.0.0.1", help="Interface to bind (keep 127.0.0.1 unless behind a proxy)."),
    port: int = typer.Option(8000, min=1, max=65535),
    batching: bool = typer.Option(True, "--batching/--no-batching", help="Dynamic micro-batching of concurrent requests."),
    max_batch: int = typer.Option(16, min=1, help="Most posts merged into one model call."),
    max_wait_ms: float = typer.Option(5.0, min=0.0, help="How long the first request of a batch waits for company."),
    max_text_chars: int = typer.Option(2_000, min=1),
    max_image_bytes: int = typer.Option(5 * 1024 * 1024, min=1),
    max_image_pixels: int = typer.Option(40_000_000, min=1),
    max_batch_posts: int = typer.Option(32, min=1, help="Most posts in one /v1/predict/batch request."),
    max_body_bytes: int = typer.Option(16 * 1024 * 1024, min=1),
    header_timeout_s: int = typer.Option(10, min=1, help="Close a connection whose request line and headers "
                                         "are not complete this long after it opened (or after its last response)."),
    body_timeout_s: int = typer.Option(30, min=1, help="Answer 408 when a request body stalls this long."),
    trim_interval_s: float = typer.Option(
        5.0, help="Return freed memory to the OS (glibc malloc_trim) at most this often; negative: never."
    ),
    torch_threads: int = typer.Option(0, min=0, help="torch intra-op threads (0: torch's default)."),
    precision: Optional[str] = typer.Option(None, "--precision", help="fp32 or bf16 (autocast; fast on CPUs "
                                            "with AMX / AVX512-BF16). Default: the checkpoint's training precision."),
    log_level: str = typer.Option("info", help="uvicorn log level."),
    access_log: bool = typer.Option(False, "--access-log/--no-access-log"),
) -> None:
    """Serve POST /v1/predict, /v1/predict/batch, GET /healthz, /v1/model, /docs and the web page at /."""
    import uvicorn

    from lrsa.serving import BatchingConfig, Limits, ServingConfig, create_app
    from lrsa.serving.model import ModelPredictor
    from lrsa.serving.server import uvicorn_config

    if not checkpoint.is_dir():
        raise typer.BadParameter(f"{checkpoint}: not a directory", param_hint="--checkpoint")
    if torch_threads:
        import torch

        torch.set_num_threads(torch_threads)
    config = ServingConfig(
        limits=Limits(
            max_text_chars=max_text_chars,
            max_image_bytes=max_image_bytes,
            max_image_pixels=max_image_pixels,
            max_batch=max_batch_posts,
            max_body_bytes=max_body_bytes,
            header_timeout_s=header_timeout_s,
            body_timeout_s=body_timeout_s,
        ),
        batching=BatchingConfig(
            enabled=batching, max_batch=max_batch, max_wait_ms=max_wait_ms, trim_interval_s=trim_interval_s
        ),
    )
    predictor = ModelPredictor.from_checkpoint(checkpoint, precision=precision)
    app = create_app(predictor, config)
    typer.echo(
        f"lrsa serve: {checkpoint} on http://{host}:{port}/ "
        f"(micro-batching {'on, ' + str(max_batch) + ' posts / ' + str(max_wait_ms) + ' ms' if batching else 'off'})",
        err=True,
    )
    uvicorn.Server(uvicorn_config(app, config.limits, host=host, port=port, log_level=log_level,
                                  access_log=access_log)).run()
