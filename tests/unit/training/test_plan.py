"""Step arithmetic, sharding and the LR schedule (pure functions)."""

from __future__ import annotations

import pytest
import torch

from raylift.errors import SpecError
from raylift.training.plan import (
    SampleStream,
    StepPlan,
    epoch_permutation,
    fixed_global_batch,
    lr_multiplier,
    lr_world_factor,
    shard_range,
)


def plan(
    world: int = 2,
    accum: int = 1,
    n: int = 1000,
    batch: int = 16,
    max_workers: int | None = None,
    policy: str = "keep_global",
) -> StepPlan:
    return StepPlan(
        n,
        batch,
        world,
        accum,
        epochs=3,
        max_steps=None,
        max_workers=max_workers,
        batch_policy=policy,
    )  # type: ignore[arg-type]


def step_indices(p: StepPlan, stream: SampleStream, seen: int) -> list[list[int]]:
    """Per rank, the sample indices it trains on in the step at ``seen``."""
    return [
        [
            i
            for m in range(p.accum_steps)
            for i in stream.indices(p.micro_batch_positions(seen, m, r)).tolist()
        ]
        for r in range(p.world_size)
    ]


@pytest.mark.parametrize(("world", "accum"), [(1, 1), (2, 1), (2, 3), (4, 2)])
def test_ranks_see_disjoint_shards_that_cover_each_step(world: int, accum: int) -> None:
    p = plan(world, accum)
    stream = SampleStream(p.num_train, seed=3)
    seen: list[int] = []
    samples_seen = 0
    for _ in range(p.steps_per_epoch):
        per_rank = step_indices(p, stream, samples_seen)
        for a in range(world):
            for b in range(a + 1, world):
                assert not set(per_rank[a]) & set(per_rank[b])
        in_step = [i for r in per_rank for i in r]
        assert len(in_step) == len(set(in_step)) == p.global_batch
        seen += in_step
        samples_seen += p.global_batch
    assert sorted(seen) == sorted(epoch_permutation(p.num_train, 3, 0)[: len(seen)].tolist())


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_keep_global_batch_trains_on_the_same_samples_at_any_world_size(workers: int) -> None:
    reference = plan(world=3, max_workers=3, batch=8)
    p = plan(world=workers, max_workers=3, batch=8)
    stream = SampleStream(p.num_train, seed=0)
    assert p.global_batch == reference.global_batch == 24
    assert p.accum_steps == {1: 3, 2: 2, 3: 1}[workers]
    assert p.total_steps == reference.total_steps
    for seen in (0, 24, 960, 984):  # 984 spans the epoch boundary at 1000
        mine = sorted(i for r in step_indices(p, stream, seen) for i in r)
        theirs = sorted(i for r in step_indices(reference, stream, seen) for i in r)
        assert mine == theirs


def test_keep_per_worker_batch_scales_the_global_batch() -> None:
    p = plan(world=1, max_workers=4, batch=8, policy="keep_per_worker")
    assert p.global_batch == 8 and p.accum_steps == 1
    assert p.total_steps == plan(world=4, max_workers=4, batch=8).total_steps
    assert lr_world_factor(1, 4, "keep_per_worker", True) == 0.25
    assert lr_world_factor(1, 4, "keep_per_worker", False) == 1.0
    assert lr_world_factor(1, 4, "keep_global", True) == 1.0


def test_stream_spans_epochs() -> None:
    stream = SampleStream(10, seed=1)
    got = stream.indices(range(8, 13)).tolist()
    assert (
        got == epoch_permutation(10, 1, 0)[8:].tolist() + epoch_permutation(10, 1, 1)[:3].tolist()
    )


def test_data_order_depends_only_on_seed_and_epoch() -> None:
    a = epoch_permutation(100, seed=1, epoch=2)
    assert torch.equal(a, epoch_permutation(100, seed=1, epoch=2))
    assert not torch.equal(a, epoch_permutation(100, seed=1, epoch=3))
    assert not torch.equal(a, epoch_permutation(100, seed=2, epoch=2))


def test_total_steps_epochs_and_max_steps() -> None:
    p = StepPlan(1000, 10, 2, 1, epochs=3, max_steps=None)
    assert p.steps_per_epoch == 50 and p.total_steps == 150
    assert StepPlan(1000, 10, 2, 1, epochs=3, max_steps=70).total_steps == 70
    assert StepPlan(1000, 10, 2, 1, epochs=None, max_steps=70).total_steps == 70
    assert p.epoch_at(999) == 0 and p.epoch_at(1000) == 1


def test_batch_larger_than_data_is_a_spec_error() -> None:
    with pytest.raises(SpecError, match=r"data\.batch_size"):
        _ = StepPlan(10, 8, 2, 1, epochs=1, max_steps=None).steps_per_epoch


def test_validation_shards_cover_without_overlap() -> None:
    for n in (0, 1, 7, 100):
        for world in (1, 2, 3):
            ranges = [shard_range(n, r, world) for r in range(world)]
            flat = [i for r in ranges for i in r]
            assert flat == list(range(n))


def test_lr_schedule_warmup_then_decay() -> None:
    assert lr_multiplier(0, 100, "cosine", 10, 0.0) == pytest.approx(0.1)
    assert lr_multiplier(9, 100, "cosine", 10, 0.0) == pytest.approx(1.0)
    assert lr_multiplier(10, 100, "cosine", 10, 0.0) == pytest.approx(1.0)
    assert lr_multiplier(100, 100, "cosine", 10, 0.1) == pytest.approx(0.1)
    assert lr_multiplier(55, 100, "linear", 10, 0.0) == pytest.approx(0.5)
    assert lr_multiplier(99, 100, "constant", 0, 0.0) == 1.0
    values = [lr_multiplier(s, 100, "cosine", 10, 0.0) for s in range(10, 100)]
    assert values == sorted(values, reverse=True)


def test_a_fixed_global_batch_sets_accumulation_at_every_world_size() -> None:
    fixed = {"num_train": 1000, "per_worker_batch": 16, "grad_accum_steps": 1}
    for world, accum in [(1, 7), (2, 4), (4, 2), (8, 1)]:
        p = StepPlan(**fixed, world_size=world, epochs=1, max_steps=None, fixed_global_batch=100)
        assert (p.global_batch, p.accum_steps, p.total_steps) == (100, accum, 10)
        stream = SampleStream(p.num_train, seed=0)
        covered = sorted(i for rank in step_indices(p, stream, 0) for i in rank)
        assert covered == sorted(stream.indices(range(0, 100)).tolist())
    too_big = StepPlan(**fixed, world_size=1, epochs=1, max_steps=None, fixed_global_batch=2000)
    with pytest.raises(SpecError, match="global batch") as caught:
        _ = too_big.total_steps
    assert caught.value.key == "train.global_batch_size"


def test_global_batch_tokens_round_up_to_whole_sequences() -> None:
    assert fixed_global_batch(None, 1000, 64) == 16
    assert fixed_global_batch(48, None, 64) == 48
    assert fixed_global_batch(None, None, 64) is None
    with pytest.raises(SpecError, match="language-model") as caught:
        fixed_global_batch(None, 1000, None)
    assert caught.value.key == "train.global_batch_tokens"
