"""Validation on each rank's shard of the validation split, reduced across ranks."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
import torch.distributed as dist

from raylift.data.base import IGNORE_INDEX, PreparedData
from raylift.training.plan import shard_range
from raylift.training.setup import model_kwargs

if TYPE_CHECKING:
    from raylift.training.setup import WorkerSetup


@torch.no_grad()
def evaluate(setup: WorkerSetup, rank: int, world_size: int) -> dict[str, float]:
    """val_loss (+ val_accuracy, or val_perplexity for language models)."""
    data, model = setup.data, setup.forward_model
    model.eval()
    shard = shard_range(data.num_val, rank, world_size)
    batch = setup.job.data.batch_size
    max_batches = setup.job.train.max_val_batches
    starts = list(range(shard.start, shard.stop, batch))
    rounds = len(starts)
    if setup.sharded:  # every rank must run as many forwards (each one all-gathers)
        rounds = math.ceil(math.ceil(data.num_val / world_size) / batch)
    if max_batches is not None:
        rounds = min(rounds, max_batches)
    loss_sum = torch.zeros(3, dtype=torch.float64)  # loss sum, correct, count
    for i in range(rounds):
        if i >= len(starts):  # this rank's shard is one row short: a forward to match
            with setup.autocast():
                model(
                    data.val_inputs[:1].to(setup.device),
                    **model_kwargs(data.val_positions, slice(0, 1), setup.device),
                )
            continue
        start = starts[i]
        stop = min(start + batch, shard.stop)
        with setup.autocast():
            loss_sum += batch_sums(
                model,
                data.val_inputs[start:stop].to(setup.device),
                data.val_targets[start:stop].to(setup.device),
                model_kwargs(data.val_positions, slice(start, stop), setup.device),
            )
    if dist.is_available() and dist.is_initialized():
        reduced = loss_sum.to(setup.device) if setup.device.type == "cuda" else loss_sum
        dist.all_reduce(reduced)
        loss_sum = reduced.cpu()
    return summarise(loss_sum, setup.info.task, prefix="val_")


def batch_sums(
    model: torch.nn.Module,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    extra: dict[str, torch.Tensor],
) -> torch.Tensor:
    """(summed loss, correct, counted) over one batch, float64; a language model's
    targets count per token, IGNORE_INDEX ones not at all."""
    logits = model(inputs, **extra)
    logits = logits.float().reshape(-1, logits.shape[-1])
    flat_targets = targets.reshape(-1)
    trained = flat_targets != IGNORE_INDEX  # all of them, but for masked LM tokens
    loss = torch.nn.functional.cross_entropy(
        logits, flat_targets, reduction="sum", ignore_index=IGNORE_INDEX
    )
    correct = ((logits.argmax(-1) == flat_targets) & trained).sum()
    return torch.tensor([float(loss), float(correct), float(trained.sum())], dtype=torch.float64)


def summarise(sums: torch.Tensor, task: str, *, prefix: str) -> dict[str, float]:
    """loss (+ accuracy, or perplexity and token accuracy for language models)."""
    count = max(float(sums[2]), 1.0)
    loss = float(sums[0]) / count
    metrics = {f"{prefix}loss": loss}
    if task == "language_modeling":
        metrics[f"{prefix}perplexity"] = math.exp(min(loss, 50.0))
        metrics[f"{prefix}token_accuracy"] = float(sums[1]) / count
    else:
        metrics[f"{prefix}accuracy"] = float(sums[1]) / count
    return metrics


@torch.no_grad()
def evaluate_split(
    model: torch.nn.Module,
    data: PreparedData,
    split: str,
    *,
    batch_size: int,
    max_batches: int | None = None,
    device: torch.device | None = None,
) -> dict[str, float]:
    """One process over a whole split (``"val"`` or ``"train"``) of ``data``, in
    order: loss, perplexity, token accuracy and the tokens counted (``raylift eval``)."""
    device = device or torch.device("cpu")
    inputs, targets = getattr(data, f"{split}_inputs"), getattr(data, f"{split}_targets")
    positions = getattr(data, f"{split}_positions")
    model.eval()
    sums = torch.zeros(3, dtype=torch.float64)
    starts = range(0, int(inputs.shape[0]), batch_size)
    for i, start in enumerate(starts):
        if max_batches is not None and i >= max_batches:
            break
        stop = min(start + batch_size, int(inputs.shape[0]))
        sums += batch_sums(
            model,
            inputs[start:stop].to(device),
            targets[start:stop].to(device),
            model_kwargs(positions, slice(start, stop), device),
        )
    return {**summarise(sums, data.info.task, prefix=""), "counted": float(sums[2])}
