"""The devices a training run uses, through Lightning Fabric: one process, or DDP over several.

``train.devices`` processes per machine on ``train.num_nodes`` machines run the same loop
(``lrsa.training.loop``) under DDP: gloo on CPUs, NCCL on GPUs (``train.accelerator``: ``cpu``, ``cuda`` or
``auto`` = CUDA when present). Contract:

- ``train.batch_size`` is the **global** batch: every step each rank takes its share (``shard``) of the same
  global batch, and its loss is weighted by that share (``share_weight``), so the averaged gradient is
  the global batch's and the schedule does not change with the number of processes (a last global batch
  smaller than the number of processes is skipped by every rank; with one process nothing is skipped);
- every rank draws the same data order and modality-dropout mask (same seeds), and starts from the same
  weights (DDP broadcasts rank 0's);
- rank 0 alone evaluates dev, decides (best epoch, early stop) and writes files (checkpoints, resume state,
  metrics, result); it broadcasts its decision to the other ranks;
- a launch from the command line (``lrsa train --devices 2``) starts the other processes itself (Fabric
  re-runs the command with its rank); under ``torchrun`` or a cluster launcher the ranks come from the
  environment (multi-node: docs/training.md).
"""

from __future__ import annotations

from typing import Any

import torch


def make_fabric(t: Any):
    """A launched ``lightning_fabric.Fabric`` for a ``TrainConfig``; a world of one when devices=1."""
    from lightning_fabric import Fabric

    world = t.devices * t.num_nodes
    if t.batch_size < world:
        raise ValueError(f"train.batch_size={t.batch_size} is smaller than the {world} processes "
                         f"(devices x num_nodes): every process needs a share of each global batch")
    accelerator = t.accelerator
    if accelerator == "auto":
        accelerator = "cuda" if torch.cuda.is_available() else "cpu"
    if accelerator == "cuda" and not torch.cuda.is_available():
        raise ValueError("train.accelerator=cuda, but torch sees no CUDA device here")
    if world == 1:
        strategy: Any = "auto"
    else:
        from lightning_fabric.strategies import DDPStrategy

        # find_unused_parameters: the backbone's pooler takes no part in any loss (the hosts read token states)
        # static_graph: the same parameters take part in every step, so DDP finds the unused ones once
        strategy = DDPStrategy(process_group_backend="nccl" if accelerator == "cuda" else "gloo",
                               find_unused_parameters=True, static_graph=True, gradient_as_bucket_view=True)
    fabric = Fabric(accelerator=accelerator, devices=t.devices, num_nodes=t.num_nodes, strategy=strategy,
                    precision="32-true")  # compute precision is lrsa.precision's (autocast inside the model)
    fabric.launch()
    return fabric


def shard(chunk: list, rank: int, world: int) -> list:
    """This rank's share of a global batch (every ``world``-th item from ``rank``)."""
    return chunk[rank::world]


def share_weight(n_mine: int, n_global: int, world: int) -> float:
    """Loss weight of a rank holding ``n_mine`` of a global batch of ``n_global``: DDP averages the ranks'
    gradients, so weighting each by ``world * n_mine / n_global`` gives the global batch's mean."""
    return world * n_mine / n_global
