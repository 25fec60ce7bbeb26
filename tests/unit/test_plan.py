"""Step arithmetic, sharding and the LR schedule (pure functions)."""

from __future__ import annotations

import pytest
import torch

from raylift.errors import SpecError
from raylift.training.plan import StepPlan, epoch_permutation, lr_multiplier, shard_range


def plan(world: int = 2, accum: int = 1, n: int = 1000, batch: int = 16) -> StepPlan:
    return StepPlan(n, batch, world, accum, epochs=3, max_steps=None)


@pytest.mark.parametrize(("world", "accum"), [(1, 1), (2, 1), (2, 3), (4, 2)])
def test_ranks_see_disjoint_shards_that_cover_each_step(world: int, accum: int) -> None:
    p = plan(world, accum)
    perm = epoch_permutation(p.num_train, seed=3, epoch=0)
    seen: list[int] = []
    for step in range(p.steps_per_epoch):
        in_step = []
        per_rank = []
        for rank in range(world):
            idx = torch.cat([p.micro_batch_indices(perm, step, m, rank) for m in range(accum)])
            per_rank.append(set(idx.tolist()))
            in_step += idx.tolist()
        for a in range(world):
            for b in range(a + 1, world):
                assert not per_rank[a] & per_rank[b]
        assert len(in_step) == len(set(in_step)) == p.global_batch
        seen += in_step
    # one epoch covers every sample except the remainder that does not fill a step
    assert len(set(seen)) == p.steps_per_epoch * p.global_batch
    assert set(seen) == set(perm[: len(seen)].tolist())


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
    assert p.epoch_of(49) == 0 and p.epoch_of(50) == 1 and p.is_epoch_end(49)


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
