"""Pure step arithmetic: which samples each rank trains on at each step, and the LR.

Data order is a function of (seed, epoch) and the position in the epoch, never
of hidden iterator state, so a run resumed at step ``s`` sees exactly the
samples an uninterrupted run would have seen from step ``s`` on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from raylift.errors import SpecError


@dataclass(frozen=True)
class StepPlan:
    """How optimizer steps map onto epochs and sample indices."""

    num_train: int
    per_worker_batch: int
    world_size: int
    grad_accum_steps: int
    epochs: int | None
    max_steps: int | None

    @property
    def global_batch(self) -> int:
        """Samples per optimizer step, across all workers and micro-batches."""
        return self.per_worker_batch * self.world_size * self.grad_accum_steps

    @property
    def steps_per_epoch(self) -> int:
        steps = self.num_train // self.global_batch
        if steps < 1:
            raise SpecError(
                f"one optimizer step needs {self.global_batch} samples "
                f"(batch_size {self.per_worker_batch} x {self.world_size} workers x "
                f"{self.grad_accum_steps} accumulation) but the training split has "
                f"{self.num_train}; lower data.batch_size",
                key="data.batch_size",
            )
        return steps

    @property
    def total_steps(self) -> int:
        by_epochs = self.epochs * self.steps_per_epoch if self.epochs else None
        candidates = [s for s in (by_epochs, self.max_steps) if s is not None]
        return min(candidates)

    def epoch_of(self, step: int) -> int:
        """Epoch (0-based) that optimizer step ``step`` (0-based) belongs to."""
        return step // self.steps_per_epoch

    def is_epoch_end(self, step: int) -> bool:
        """True when ``step`` (0-based) is the last step of its epoch."""
        return (step + 1) % self.steps_per_epoch == 0

    def micro_batch_indices(
        self, permutation: torch.Tensor, step: int, micro: int, rank: int
    ) -> torch.Tensor:
        """Sample indices of ``rank``'s micro-batch ``micro`` of optimizer step ``step``.

        Within a step, micro-batch m covers ``world_size * batch`` consecutive
        positions of the epoch permutation; rank r takes its own slice of them,
        so ranks are disjoint and together cover the global batch.
        """
        step_in_epoch = step % self.steps_per_epoch
        start = (
            step_in_epoch * self.global_batch
            + (micro * self.world_size + rank) * self.per_worker_batch
        )
        return permutation[start : start + self.per_worker_batch]


def epoch_permutation(num_train: int, seed: int, epoch: int) -> torch.Tensor:
    """The epoch's sample order: the same on every rank and after any restart."""
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(num_train, generator=generator)


def shard_range(num: int, rank: int, world_size: int) -> range:
    """Contiguous, disjoint slices of ``range(num)`` covering it (for validation)."""
    per = math.ceil(num / world_size)
    return range(min(rank * per, num), min((rank + 1) * per, num))


def lr_multiplier(
    step: int, total_steps: int, schedule: str, warmup_steps: int, min_lr_ratio: float
) -> float:
    """LR / peak LR at optimizer step ``step``: linear warmup, then the schedule."""
    if warmup_steps and step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "constant":
        return 1.0
    decay_steps = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / decay_steps)
    cosine = 0.5 * (1.0 + math.cos(math.pi * progress))
    shape = 1.0 - progress if schedule == "linear" else cosine
    return min_lr_ratio + (1.0 - min_lr_ratio) * shape
