"""The one training loop: AdamW with warmup, gradient clipping, early stopping and checkpoint
selection on dev only (JMASA F1 for the joint hosts, MASC accuracy for the aspect host), fixed seeds,
resume after an interruption (epoch granularity), per-epoch metrics CSV and curve plots. The test split is scored once, from the dev-best checkpoint.

Run directory layout::

    config.json          the RunConfig
    metrics.csv          one row per epoch (train loss, dev scores, time, examples/s)
    curves.png           loss and dev F1 per epoch
    state/               last epoch: model + optimizer (safetensors) + state.json (epoch, rng, history)
    best/                dev-best checkpoint (safetensors + JSON config + tokenizer): load with LRSA
    predictions_{dev,test}.jsonl, scores.json, result.json (written last: the run is complete)
"""

from __future__ import annotations

import csv
import json
import math
import os
import random
import shutil
import time
from pathlib import Path
from typing import Any, Callable

import torch

from lrsa.config import RunConfig
from lrsa.io import atomic_write_text
from lrsa.training.evaluate import SELECTION, batches, evaluate_split, predict_split, score_split, write_predictions

Log = Callable[[str], None]


def set_threads(n: int | None) -> int:
    """``n`` torch threads; by default the cores left free by the machine's current load (at least 1):
    on a shared machine, more threads than free cores makes every step several times slower."""
    if not n:
        cpus = os.cpu_count() or 1
        n = max(1, min(cpus, cpus - int(os.getloadavg()[0] + 0.5)))
    torch.set_num_threads(n)
    return n


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


def write_json(path: Path, obj: Any) -> None:
    """Run records (config, scores, results, reports): sorted keys, written atomically (a unique temp file
    renamed into place, so concurrent writers never interleave)."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


# --------------------------------------------------------------------------- state (resume)


def _save_state(net, opt, sched, info: dict[str, Any], dest: Path, rngs: torch.Tensor | None = None) -> None:
    """Resume state (rank 0 writes it). ``rngs``: every rank's torch RNG state ``[world, n]`` (DDP: each
    rank draws its own dropout masks); by default this process's."""
    from safetensors.torch import save_file, save_model

    tmp = dest.with_name(f".{dest.name}.part")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_model(net, str(tmp / "model.safetensors"))
    osd = opt.state_dict()
    tensors = {}
    for pid, st in osd["state"].items():
        for k, v in st.items():
            tensors[f"{pid}.{k}"] = v if torch.is_tensor(v) else torch.tensor(v)
    rngs = torch.get_rng_state()[None] if rngs is None else rngs
    tensors["rng.torch"] = rngs[0]
    for r in range(1, len(rngs)):
        tensors[f"rng.torch.rank{r}"] = rngs[r]
    save_file(tensors, str(tmp / "optimizer.safetensors"))
    info = {**info, "param_groups": osd["param_groups"], "sched_last_epoch": sched.last_epoch,
            "rng_python": list(random.getstate()[1]), "rng_python_pos": random.getstate()[2]}
    (tmp / "state.json").write_text(json.dumps(info, indent=1))
    old = dest.with_name(f".{dest.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if dest.exists():
        os.replace(dest, old)
    os.replace(tmp, dest)
    shutil.rmtree(old, ignore_errors=True)


def _load_state(net, opt, sched, src: Path, rank: int = 0) -> dict[str, Any]:
    from safetensors.torch import load_file, load_model

    load_model(net, str(src / "model.safetensors"), strict=True)
    info = json.loads((src / "state.json").read_text())
    tensors = load_file(str(src / "optimizer.safetensors"))
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, v in tensors.items():
        if key.startswith("rng."):
            continue
        pid, name = key.split(".", 1)
        state.setdefault(int(pid), {})[name] = v
    opt.load_state_dict({"state": state, "param_groups": info["param_groups"]})
    sched.last_epoch = info["sched_last_epoch"]
    sched._last_lr = [g["lr"] for g in opt.param_groups]
    torch.set_rng_state(tensors.get(f"rng.torch.rank{rank}", tensors["rng.torch"]))
    random.setstate((3, tuple(info["rng_python"]), info["rng_python_pos"]))
    return info


# --------------------------------------------------------------------------- curves


CSV_FIELDS = ["epoch", "train_loss", "dev_jmasa_p", "dev_jmasa_r", "dev_jmasa_f1", "dev_mate_f1",
              "dev_masc_joint_acc", "dev_masc_acc", "dev_masc_f1", "dev_selection", "lr", "train_seconds",
              "train_examples_per_s", "eval_seconds"]


def write_curves(history: list[dict[str, Any]], out: Path) -> None:
    with open(out / ".metrics.csv.part", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=CSV_FIELDS)
        w.writeheader()
        for row in history:
            w.writerow({k: row.get(k) for k in CSV_FIELDS})
    os.replace(out / ".metrics.csv.part", out / "metrics.csv")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ep = [r["epoch"] for r in history]
    fig, ax = plt.subplots(1, 2, figsize=(9, 3.2))
    ax[0].plot(ep, [r["train_loss"] for r in history], marker="o")
    ax[0].set(title="train loss", xlabel="epoch")
    if history and history[0].get("selection_metric") == SELECTION["masc"][0]:  # an aspect-host (MASC) run
        ax[1].plot(ep, [r["dev_masc_acc"] for r in history], marker="o", label="MASC acc")
        ax[1].plot(ep, [r["dev_masc_f1"] for r in history], marker="s", label="MASC macro-F1")
    else:
        ax[1].plot(ep, [r["dev_jmasa_f1"] for r in history], marker="o", label="JMASA F1")
        ax[1].plot(ep, [r["dev_mate_f1"] for r in history], marker="s", label="MATE F1")
    ax[1].set(title="dev", xlabel="epoch")
    ax[1].legend()
    fig.tight_layout()
    fig.savefig(out / ".curves.part.png", dpi=80)
    plt.close(fig)
    os.replace(out / ".curves.part.png", out / "curves.png")


# --------------------------------------------------------------------------- the loop


def train(run: RunConfig, out_dir: str | Path, data_dir: str | Path | None = None,
          cache_dir: str | Path | None = None, log: Log = print) -> dict[str, Any]:
    """Train (or resume) one run into ``out_dir``; return its result (also in result.json)."""
    from lrsa.features.side_cache import FrozenTextEncoder
    from lrsa.features.text import load_tokenizer, resolve_backbone
    from lrsa.model.inputs import collate, drop_image_side, drop_rationales
    from lrsa.model.lrsa import LRSANet, checkpoint_meta, save_checkpoint
    from lrsa.training.data import load_split

    from lrsa.training.distributed import make_fabric, shard, share_weight

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cfg_path = out / "config.json"
    if cfg_path.exists():
        old = RunConfig.model_validate_json(cfg_path.read_text())
        if _comparable(old) != _comparable(run):
            raise ValueError(f"{out} holds a run with a different config; use another --out directory")
    if (out / "result.json").exists():
        log(f"{out}: already complete")
        return json.loads((out / "result.json").read_text())
    t_cfg, m_cfg = run.train, run.model
    fabric = make_fabric(t_cfg)  # launches the other processes of a DDP run (lrsa.training.distributed)
    rank, world = fabric.global_rank, fabric.world_size
    if rank != 0:
        log = lambda m: None  # noqa: E731  (rank 0 speaks and writes for the run)
    else:
        write_json(cfg_path, run.model_dump())
    threads = set_threads(t_cfg.threads)
    from lrsa.precision import note

    if warn := note(t_cfg.precision, fabric.device.type):
        log(warn)
    seed_everything(t_cfg.seed)

    path = resolve_backbone(m_cfg.backbone)
    tok = load_tokenizer(path)
    from lrsa.training.data import load_rationales

    rationales = load_rationales(run)
    rat_prov = next(iter(rationales.values())).provenance if rationales else None
    sel_name, sel = SELECTION[m_cfg.task]
    side_encoder = None
    side_dim = 0
    needs_side = m_cfg.uses_rationales or m_cfg.image_side == "captions"
    if needs_side and m_cfg.side_encoder == "frozen":
        side_encoder = FrozenTextEncoder(m_cfg.side_backbone or m_cfg.backbone, m_cfg.side_max_tokens,
                                         cache_dir=cache_dir, precision=t_cfg.precision, layers=m_cfg.side_layers)
        side_dim = side_encoder.hidden_size
    t0 = time.perf_counter()
    with fabric.rank_zero_first():  # rank 0 encodes and caches the side states; the others read the cache
        splits = {s: load_split(run, s, tok, side_encoder, data_dir, rationales, lim, cache_dir) for s, lim in
                  (("train", t_cfg.train_limit), ("dev", t_cfg.dev_limit))}
    log(f"data ready in {time.perf_counter() - t0:.1f}s ({world} x {threads} torch threads on {fabric.device.type}, "
        f"{t_cfg.precision}): train {len(splits['train'].items)}, dev {len(splits['dev'].items)}"
        + (f"; side states {side_encoder.stats}" if side_encoder else ""))

    if needs_side and m_cfg.side_encoder == "shared":
        from transformers import AutoConfig

        side_dim = int(AutoConfig.from_pretrained(path).hidden_size)
    net = LRSANet(m_cfg, path, side_dim=side_dim or 1).set_precision(t_cfg.precision)
    if net.n_frozen:
        from lrsa.features.side_cache import weights_fingerprint
        from lrsa.training.data import attach_lower_states

        t0 = time.perf_counter()
        with fabric.rank_zero_first():
            for sp in splits.values():
                attach_lower_states(sp, net, weights_fingerprint(path), cache_dir)
        log(f"lower {net.n_frozen} layers frozen, their states cached in {time.perf_counter() - t0:.1f}s")
    enc_params = [p for n, p in net.named_parameters() if n.startswith("encoder.") and p.requires_grad]
    other = [p for n, p in net.named_parameters() if not n.startswith("encoder.") and p.requires_grad]
    opt = torch.optim.AdamW([{"params": enc_params, "lr": t_cfg.lr}, {"params": other, "lr": t_cfg.head_lr}],
                            weight_decay=t_cfg.weight_decay, foreach=True)
    model, opt = fabric.setup(net, opt)  # DDP when world > 1; ``net`` stays the plain module
    n_train = len(splits["train"].items)
    steps_per_epoch = math.ceil(n_train / t_cfg.batch_size)
    if t_cfg.max_steps_per_epoch:
        steps_per_epoch = min(steps_per_epoch, t_cfg.max_steps_per_epoch)
    total = max(1, steps_per_epoch * t_cfg.epochs)
    warm = max(1, int(t_cfg.warmup * total))

    def lr_at(step: int) -> float:
        return (step + 1) / warm if step < warm else max(0.0, (total - step) / max(1, total - warm))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    history: list[dict[str, Any]] = []
    best_f1, best_epoch, start_epoch = -1.0, -1, 0
    if (out / "state" / "state.json").exists():
        info = _load_state(net, opt, sched, out / "state", rank)
        history, best_f1, best_epoch = info["history"], info["best_f1"], info["best_epoch"]
        start_epoch = info["epoch"] + 1
        log(f"resumed after epoch {info['epoch']} (best dev {sel_name} {best_f1:.2f} at epoch {best_epoch})")
    meta = checkpoint_meta(run, side_encoder, side_dim, rat_prov)
    pad = tok.pad_token_id or 0
    stopped = "epochs"
    trainable = [p for p in net.parameters() if p.requires_grad]
    rat_parts = torch.tensor([part in t_cfg.rationale_dropout_parts for part in ("text", "image")])  # L_t, L_i
    for epoch in range(start_epoch, t_cfg.epochs):
        if epoch - best_epoch > t_cfg.patience and best_epoch >= 0:
            stopped = "early"
            break
        model.train()
        g = torch.Generator().manual_seed(t_cfg.seed * 1000 + epoch)
        order = torch.randperm(n_train, generator=g).tolist()[: steps_per_epoch * t_cfg.batch_size]
        t1, losses, seen = time.perf_counter(), [], 0
        g_drop = torch.Generator().manual_seed(t_cfg.seed * 1000 + epoch + 500_000)  # resumable per epoch
        # rationale dropout draws from its own stream, so the modality-dropout draws stay those of a run without it
        g_rat = torch.Generator().manual_seed(t_cfg.seed * 1000 + epoch + 700_000)
        for chunk in batches(splits["train"].items, t_cfg.batch_size, order):  # global batches
            drop = (torch.rand(len(chunk), generator=g_drop) < t_cfg.modality_dropout
                    if t_cfg.modality_dropout else None)
            if len(chunk) < world:  # a last global batch too small to give every process a share
                continue
            mine = shard(chunk, rank, world)
            batch = collate(mine, pad, splits["train"].side)
            if drop is not None:
                drop_image_side(batch, shard(drop, rank, world))
            if t_cfg.rationale_dropout:  # [B, 2]: L_t and L_i dropped independently (only the parts asked for)
                drop_rat = torch.rand(len(chunk), 2, generator=g_rat) < t_cfg.rationale_dropout
                drop_rat &= rat_parts
                drop_rationales(batch, shard(drop_rat, rank, world))
            loss = model(batch)
            opt.zero_grad(set_to_none=True)
            fabric.backward(loss * share_weight(len(mine), len(chunk), world) if world > 1 else loss)
            torch.nn.utils.clip_grad_norm_(trainable, t_cfg.clip)  # gradients are already averaged over ranks
            opt.step()
            sched.step()
            losses.append(float(loss.detach()))
            seen += len(chunk)
        mean_loss = sum(losses) / max(1, len(losses))
        rngs = None
        if world > 1:  # the epoch ends when the slowest rank is done
            mean_loss = float(fabric.all_reduce(torch.tensor(mean_loss), reduce_op="mean"))
            rngs = _gather(torch.get_rng_state(), world)  # saved with the state: an exact resume per rank
        train_s = time.perf_counter() - t1
        if rank != 0:  # rank 0 evaluates, writes and decides; the others follow its decision
            best_f1, best_epoch = fabric.broadcast(None, src=0)
            continue
        t2 = time.perf_counter()
        dev_pred = predict_split(net, splits["dev"], pad)
        dev = score_split(splits["dev"], dev_pred)
        row = {"epoch": epoch, "train_loss": round(mean_loss, 5),
               "dev_jmasa_p": dev["jmasa"]["p"], "dev_jmasa_r": dev["jmasa"]["r"],
               "dev_jmasa_f1": dev["jmasa"]["f1"], "dev_mate_f1": dev["mate"]["f1"],
               "dev_masc_joint_acc": dev["masc_joint"]["acc"],
               "dev_masc_acc": dev["masc"]["acc"] if dev.get("masc") else None,
               "dev_masc_f1": dev["masc"]["macro_f1"] if dev.get("masc") else None,
               "dev_selection": sel(dev), "selection_metric": sel_name, "lr": sched.get_last_lr()[0],
               "train_seconds": round(train_s, 2), "train_examples_per_s": round(seen / train_s, 2),
               "eval_seconds": round(time.perf_counter() - t2, 2)}
        history.append(row)
        log(f"epoch {epoch}: loss {row['train_loss']:.4f} dev {sel_name} {sel(dev):.2f} "
            + (f"MATE F1 {row['dev_mate_f1']:.2f} " if m_cfg.task == "jmasa" else f"macro-F1 {row['dev_masc_f1']:.2f} ")
            + f"({train_s:.0f}s, {row['train_examples_per_s']} ex/s)")
        if sel(dev) > best_f1:
            best_f1, best_epoch = sel(dev), epoch
            save_checkpoint(net, tok, {**meta, "training": {**meta["training"], "best_epoch": epoch,
                                                            "dev": dev}}, out / "best")
            write_predictions(dev_pred, out / "predictions_dev.jsonl")
        _save_state(net, opt, sched, {"epoch": epoch, "history": history, "best_f1": best_f1,
                                      "best_epoch": best_epoch}, out / "state", rngs)
        write_curves(history, out)
        if world > 1:
            fabric.broadcast((best_f1, best_epoch), src=0)
    if rank == 0:
        finish(run, out, data_dir, cache_dir, history, best_epoch, stopped, log)
    fabric.barrier()  # every rank returns once the result is written
    return json.loads((out / "result.json").read_text())


def _gather(t: torch.Tensor, world: int) -> torch.Tensor:
    """Every rank's ``t``, stacked (a plain collective: nothing to differentiate)."""
    import torch.distributed as dist

    parts = [torch.empty_like(t) for _ in range(world)]
    dist.all_gather(parts, t)
    return torch.stack(parts)


def without_placement(run: RunConfig) -> RunConfig:
    """A run config without where it runs (devices, nodes, accelerator, threads): what a finished run must match
    to stand for a planned one (``lrsa.training.tables.run``)."""
    return run.model_copy(update={"train": run.train.model_copy(update={
        "devices": 1, "num_nodes": 1, "accelerator": "auto", "threads": None})})


def _comparable(run: RunConfig) -> RunConfig:
    """What must match to resume a run: everything but the epoch budget and where it runs."""
    run = without_placement(run)
    return run.model_copy(update={"train": run.train.model_copy(update={"epochs": 0})})


def finish(run: RunConfig, out: Path, data_dir, cache_dir, history, best_epoch, stopped, log: Log) -> dict:
    """Score the dev-best checkpoint on test once; write scores.json and result.json. The checkpoint is
    loaded and scored as ``LRSA.from_pretrained(out / "best").evaluate_split`` would (its own run config and
    precision, its side encoder checked and built once), with the training-level pieces."""
    from lrsa.model.lrsa import load_checkpoint, load_side_encoder, record_scores

    net, tokenizer, meta = load_checkpoint(out / "best")
    best = RunConfig.model_validate(meta["run"])
    net.eval().set_precision(best.train.precision)
    side: dict[str, Any] = {}

    def side_encoder():
        if side.get("encoder") is None:
            side["encoder"] = load_side_encoder(meta.get("side_encoder"), cache_dir, best.train.precision)
        return side["encoder"]

    def evaluate(split: str, limit: int | None, without_image: bool = False) -> dict[str, Any]:
        return evaluate_split(net, tokenizer, best, side_encoder, run.train.dataset, split, data_dir=data_dir,
                              limit=limit, without_image=without_image, cache_dir=cache_dir)

    from lrsa.io import git_commit

    from lrsa.env import machine

    result: dict[str, Any] = {"config": run.model_dump(), "commit": git_commit(),
                              "machine": machine(torch.get_num_threads()), "seed": run.train.seed,
                              "best_epoch": best_epoch, "stopped": stopped,
                              "epochs_run": len(history), "history": history,
                              "train_seconds": round(sum(r["train_seconds"] for r in history), 1)}
    for split, lim in (("dev", run.train.dev_limit), ("test", run.train.test_limit)):
        if split == "test" and not run.train.eval_test:
            continue
        t0 = time.perf_counter()
        ev = evaluate(split, lim)
        write_predictions(ev["predictions"], out / f"predictions_{split}.jsonl")
        result[split] = ev["scores"]
        result[f"{split}_seconds"] = round(time.perf_counter() - t0, 1)
        sc = ev["scores"]
        log(f"{split}: " + (f"JMASA F1 {sc['jmasa']['f1']:.2f} MATE F1 {sc['mate']['f1']:.2f}"
                            if run.model.task == "jmasa" else
                            f"MASC acc {sc['masc']['acc']:.2f} macro-F1 {sc['masc']['macro_f1']:.2f}"))
    if run.train.eval_test and (run.model.image_side != "none" or run.model.uses_rationales):
        # the same checkpoint on test posts stripped of their image (V and L_i empty): text-only use
        ev = evaluate("test", run.train.test_limit, without_image=True)
        result["test_without_image"] = ev["scores"]
        log(f"test without images: " + (f"JMASA F1 {ev['scores']['jmasa']['f1']:.2f}" if run.model.task == "jmasa"
                                         else f"MASC acc {ev['scores']['masc']['acc']:.2f}"))
    record_scores(out / "best", dev=result.get("dev"), test=result.get("test"))
    write_json(out / "scores.json", {k: result.get(k) for k in ("dev", "test")})
    write_curves(history, out)
    write_json(out / "result.json", result)
    shutil.rmtree(out / "state", ignore_errors=True)
    return result
