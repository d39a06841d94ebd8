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
    torch_threads: int = typer.Option(0, min=0, help="torch intra-op threads per worker (0: torch's default)."),
    precision: Optional[str] = typer.Option(None, "--precision", help="fp32 or bf16 (autocast; fast on CPUs "
                                            "with AMX / AVX512-BF16). Default: the checkpoint's training precision."),
    workers: int = typer.Option(1, min=1, help="Server processes on the port, each loading the model "
                                "(SO_REUSEPORT; combine with --torch-threads: e.g. 2 workers x 1 thread on 2 cores)."),
    quantize: str = typer.Option("none", help="int8 dynamic quantization of the Linear layers: none (the "
                                 "reference), side (the frozen side encoder), host (tweet encoder, fusion, head) "
                                 "or all. Predictions move by the int8 rounding (docs/serving.md: F1 measured)."),
    side_max_tokens: Optional[int] = typer.Option(None, min=1, help="Token budget of each side text (image text, "
                                                  "rationales) read by the frozen encoder. Default: the checkpoint's."),
    onednn_cache_capacity: Optional[int] = typer.Option(
        None, min=0, help="oneDNN primitive cache capacity (ONEDNN_PRIMITIVE_CACHE_CAPACITY; its default: 1024). "
        "Bounds the memory that bf16 batches of many shapes hold; 0 caches nothing (slower)."),
    rationales: Optional[str] = typer.Option(
        None, "--rationales", help="A substitute rationale writer for both parts (lexicon, local, openai). "
        "Default: the writers the model was trained with; a part whose writer cannot run here (e.g. the published "
        "MiniGPT-4 descriptions) is left empty, and every answer says so."),
    log_level: str = typer.Option("info", help="uvicorn log level."),
    access_log: bool = typer.Option(False, "--access-log/--no-access-log"),
) -> None:
    """Serve POST /v1/predict, /v1/predict/batch, GET /healthz, /v1/model, /docs and the web page at /."""
    import os

    from lrsa.serving import BatchingConfig, Limits, ServingConfig
    from lrsa.serving.workers import run_workers, serve_in_process

    if not checkpoint.is_dir():
        raise typer.BadParameter(f"{checkpoint}: not a directory", param_hint="--checkpoint")
    from lrsa.model.quantize import QUANTIZE_CHOICES

    if quantize not in QUANTIZE_CHOICES:
        raise typer.BadParameter(f"{quantize!r}: one of {', '.join(QUANTIZE_CHOICES)}", param_hint="--quantize")
    if onednn_cache_capacity is not None:  # read by oneDNN when it builds its first primitive (and by workers)
        os.environ["ONEDNN_PRIMITIVE_CACHE_CAPACITY"] = str(onednn_cache_capacity)
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
    spec = {"checkpoint": str(checkpoint), "config": config, "torch_threads": torch_threads, "host": host,
            "port": port, "log_level": log_level, "access_log": access_log,
            "model": {"precision": precision, "quantize": quantize, "side_max_tokens": side_max_tokens,
                      "rationale_backend": rationales}}
    typer.echo(
        f"lrsa serve: {checkpoint} on http://{host}:{port}/ "
        f"(micro-batching {'on, ' + str(max_batch) + ' posts / ' + str(max_wait_ms) + ' ms' if batching else 'off'}"
        f"{'; ' + str(workers) + ' workers' if workers > 1 else ''}"
        f"{'; int8 ' + quantize if quantize != 'none' else ''}"
        f"{'; side texts <= ' + str(side_max_tokens) + ' tokens' if side_max_tokens else ''})",
        err=True,
    )
    if workers == 1:
        serve_in_process(spec)
    else:
        raise typer.Exit(run_workers(spec, workers))
