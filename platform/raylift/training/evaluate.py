"""Validation on each rank's shard of the validation split, reduced across ranks."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
import torch.distributed as dist

from raylift.data.base import IGNORE_INDEX
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
        inputs = data.val_inputs[start:stop].to(setup.device)
        targets = data.val_targets[start:stop].to(setup.device)
        with setup.autocast():
            logits = model(
                inputs, **model_kwargs(data.val_positions, slice(start, stop), setup.device)
            )
        logits = logits.float().reshape(-1, logits.shape[-1])
        flat_targets = targets.reshape(-1)
        trained = flat_targets != IGNORE_INDEX  # all of them, but for masked LM tokens
        loss_sum[0] += float(
            torch.nn.functional.cross_entropy(
                logits, flat_targets, reduction="sum", ignore_index=IGNORE_INDEX
            )
        )
        loss_sum[1] += float(((logits.argmax(-1) == flat_targets) & trained).sum())
        loss_sum[2] += float(trained.sum())
    if dist.is_available() and dist.is_initialized():
        reduced = loss_sum.to(setup.device) if setup.device.type == "cuda" else loss_sum
        dist.all_reduce(reduced)
        loss_sum = reduced.cpu()
    count = max(float(loss_sum[2]), 1.0)
    val_loss = float(loss_sum[0]) / count
    metrics = {"val_loss": val_loss}
    if setup.info.task == "language_modeling":
        metrics["val_perplexity"] = math.exp(min(val_loss, 50.0))
        metrics["val_token_accuracy"] = float(loss_sum[1]) / count
    else:
        metrics["val_accuracy"] = float(loss_sum[1]) / count
    return metrics
