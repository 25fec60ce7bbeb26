"""Pure step arithmetic: which samples each rank trains on at each step, and the LR.

Training consumes one endless *sample stream*: epoch e's seeded permutation of
the training split, then epoch e+1's, and so on. An optimizer step takes the
next ``global_batch`` positions of the stream, starting at ``samples_seen``.
Which samples a step trains on therefore depends only on (seed, samples_seen),
never on hidden iterator state or on the number of workers, so a run resumed
at any step, with any number of workers, continues exactly where it stopped.

``total_steps`` is fixed when the run is planned (at ``max_workers``) and does
not change on a resize. On a resize, ``batch_policy`` decides the batch:

- ``keep_global``: the global batch stays ``batch_size * max_workers *
  grad_accum_steps`` (or ``train.global_batch_size``, or ``global_batch_tokens``
  in whole sequences); fewer workers accumulate more micro-batches.
- ``keep_per_worker``: each worker keeps ``batch_size * grad_accum_steps`` per
  step, so the global batch shrinks and grows with the workers (optionally with
  the LR scaled linearly, see :func:`lr_multiplier`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import torch

from raylift.errors import SpecError

BatchPolicy = Literal["keep_global", "keep_per_worker"]


@dataclass(frozen=True)
class StepPlan:
    """How optimizer steps map onto the sample stream at one world size."""

    num_train: int
    per_worker_batch: int
    world_size: int
    grad_accum_steps: int
    epochs: int | None
    max_steps: int | None
    max_workers: int | None = None  # reference world size; defaults to world_size
    batch_policy: BatchPolicy = "keep_global"
    fixed_global_batch: int | None = None  # train.global_batch_size (or from tokens)

    @property
    def reference_workers(self) -> int:
        return self.max_workers or self.world_size

    @property
    def reference_global_batch(self) -> int:
        """Samples per optimizer step at ``max_workers``; fixes ``total_steps``."""
        if self.fixed_global_batch is not None:
            return self.fixed_global_batch
        return self.per_worker_batch * self.reference_workers * self.grad_accum_steps

    @property
    def global_batch(self) -> int:
        """Samples per optimizer step at the current world size."""
        if self.batch_policy == "keep_per_worker":
            return self.per_worker_batch * self.world_size * self.grad_accum_steps
        return self.reference_global_batch

    @property
    def accum_steps(self) -> int:
        """Micro-batches per optimizer step at the current world size."""
        if self.batch_policy == "keep_per_worker":
            return self.grad_accum_steps
        return math.ceil(self.global_batch / (self.per_worker_batch * self.world_size))

    @property
    def steps_per_epoch(self) -> int:
        steps = self.num_train // self.reference_global_batch
        if steps < 1:
            if self.fixed_global_batch is not None:
                raise SpecError(
                    f"one optimizer step needs {self.fixed_global_batch} samples but the "
                    f"training split has {self.num_train}; lower the global batch size",
                    key="train.global_batch_size",
                )
            raise SpecError(
                f"one optimizer step needs {self.reference_global_batch} samples "
                f"(batch_size {self.per_worker_batch} x {self.reference_workers} workers x "
                f"{self.grad_accum_steps} accumulation) but the training split has "
                f"{self.num_train}; lower data.batch_size",
                key="data.batch_size",
            )
        return steps

    @property
    def total_steps(self) -> int:
        by_epochs = self.epochs * self.steps_per_epoch if self.epochs else None
        return min(s for s in (by_epochs, self.max_steps) if s is not None)

    def epoch_at(self, samples_seen: int) -> int:
        """Epoch (0-based) of the stream position ``samples_seen``."""
        return samples_seen // self.num_train

    def micro_batch_positions(self, samples_seen: int, micro: int, rank: int) -> range:
        """Stream positions of ``rank``'s micro-batch ``micro`` of the step at ``samples_seen``.

        The step's global batch is cut into ``accum_steps`` consecutive chunks and
        each chunk into ``world_size`` parts (sizes differ by at most one), so the
        ranks are disjoint and together cover the global batch.
        """
        chunk = _part(
            range(samples_seen, samples_seen + self.global_batch), self.accum_steps, micro
        )
        return _part(chunk, self.world_size, rank)


def _part(span: range, parts: int, index: int) -> range:
    """Part ``index`` of ``span`` cut into ``parts`` nearly equal consecutive parts."""
    size, extra = divmod(len(span), parts)
    start = span.start + index * size + min(index, extra)
    return range(start, start + size + (1 if index < extra else 0))


@dataclass
class SampleStream:
    """Maps stream positions to training-sample indices (permutations cached)."""

    num_train: int
    seed: int
    _cache: dict[int, torch.Tensor] = field(default_factory=dict)

    def permutation(self, epoch: int) -> torch.Tensor:
        if epoch not in self._cache:
            if len(self._cache) > 2:
                self._cache.pop(min(self._cache))
            self._cache[epoch] = epoch_permutation(self.num_train, self.seed, epoch)
        return self._cache[epoch]

    def indices(self, positions: range) -> torch.Tensor:
        """Sample indices at stream positions ``positions`` (may span epochs)."""
        pieces = []
        position = positions.start
        while position < positions.stop:
            epoch, offset = divmod(position, self.num_train)
            take = min(positions.stop - position, self.num_train - offset)
            pieces.append(self.permutation(epoch)[offset : offset + take])
            position += take
        return torch.cat(pieces) if pieces else torch.empty(0, dtype=torch.long)


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


def lr_world_factor(
    world_size: int, max_workers: int, policy: BatchPolicy, scale_lr: bool
) -> float:
    """Linear LR scaling for keep_per_worker runs that lost workers (1.0 otherwise)."""
    if policy == "keep_per_worker" and scale_lr:
        return world_size / max_workers
    return 1.0


def fixed_global_batch(
    samples: int | None, tokens: int | None, context_length: int | None
) -> int | None:
    """``train.global_batch_size``, or ``global_batch_tokens`` in whole sequences."""
    if samples is not None:
        return int(samples)
    if tokens is None:
        return None
    if not context_length:
        raise SpecError(
            "train.global_batch_tokens needs a language-model data set (sequences of tokens); "
            "use train.global_batch_size",
            key="train.global_batch_tokens",
        )
    return math.ceil(int(tokens) / context_length)
