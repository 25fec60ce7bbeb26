"""One optimizer step of one rank: the part of the training loop that needs no Ray.

The Ray Train loop (training/loop.py) calls it, and so does a plain torchrun
script (benchmarks/gpu_train.py on a machine without Ray).
"""

from __future__ import annotations

import contextlib

from torch import nn

from raylift.training.plan import SampleStream
from raylift.training.setup import WorkerSetup, model_kwargs
from raylift.training.sharding import no_sync


def optimizer_step(setup: WorkerSetup, stream: SampleStream, samples_seen: int, rank: int) -> float:
    """One optimizer step over the global batch at ``samples_seen``; rank's mean loss."""
    plan, data = setup.plan, setup.data
    model, optimizer = setup.forward_model, setup.optimizer
    model.train()
    accum = plan.accum_steps
    # DDP and FSDP average gradients over ranks, so scale each rank's summed per-sample
    # losses by world/global: the result is the mean over the whole global batch,
    # whatever the (possibly uneven) split into ranks and micro-batches.
    scale = plan.world_size / plan.global_batch
    loss_sum, count = 0.0, 0
    for micro in range(accum):
        indices = stream.indices(plan.micro_batch_positions(samples_seen, micro, rank))
        inputs = data.train_inputs[indices].to(setup.device, non_blocking=True)
        targets = data.train_targets[indices].to(setup.device, non_blocking=True)
        extra = model_kwargs(data.train_positions, indices, setup.device)
        last = micro == accum - 1
        with contextlib.nullcontext() if last else no_sync(setup.model), setup.autocast():
            per_sample = setup.loss(model(inputs, **extra), targets)
            loss = per_sample.sum() * scale
        if setup.scaler is not None:
            setup.scaler.scale(loss).backward()
        else:
            loss.backward()
        loss_sum += float(per_sample.detach().sum())
        count += len(indices)
    grad_clip = setup.job.train.grad_clip
    if setup.scaler is not None:
        setup.scaler.unscale_(optimizer)
    if grad_clip:
        nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    if setup.scaler is not None:
        setup.scaler.step(optimizer)
        setup.scaler.update()
    else:
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    setup.scheduler.step()
    return loss_sum / max(count, 1)
