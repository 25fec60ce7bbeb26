"""The pure resize decisions: ask for a checkpoint first, resize once it is registered."""

from __future__ import annotations

from raylift.ray_compat.nodes import without_nodes
from raylift.ray_compat.resize import (
    CheckpointBeforeResize,
    ResizeLink,
    checkpoint_first,
    resize_due,
)


def test_a_resize_of_a_running_group_asks_for_a_checkpoint_first() -> None:
    assert checkpoint_first(2, 1, now=10.0, can_ask=True) == CheckpointBeforeResize(2, 10.0)
    assert checkpoint_first(1, 2, now=10.0, can_ask=True) == CheckpointBeforeResize(1, 10.0)
    assert checkpoint_first(None, 1, now=10.0, can_ask=True) is None  # Ray decided no resize
    assert checkpoint_first(2, 2, now=10.0, can_ask=True) is None  # same size
    assert checkpoint_first(2, 1, now=10.0, can_ask=False) is None  # nobody to ask: resize now


def test_a_held_resize_waits_for_a_checkpoint_registered_after_the_request() -> None:
    ask = CheckpointBeforeResize(num_workers=2, decided_at=100.0)
    due = {"ask_failed": False, "wait_s": 30.0}
    assert not resize_due(ask, registered_at=float("-inf"), now=101.0, **due)
    assert not resize_due(ask, registered_at=99.0, now=101.0, **due)  # an older checkpoint
    assert resize_due(ask, registered_at=100.5, now=101.0, **due)
    assert not resize_due(ask, registered_at=99.0, now=130.0, **due)
    assert resize_due(ask, registered_at=99.0, now=130.5, **due)  # waited long enough
    assert resize_due(ask, registered_at=99.0, now=101.0, ask_failed=True, wait_s=30.0)


def test_the_link_carries_one_request_and_the_facts_back() -> None:
    link = ResizeLink()
    assert link.take() is None
    ask = CheckpointBeforeResize(2, 5.0)
    link.post(ask)
    assert link.take() == ask and link.take() is None  # taken once
    assert not link.ask_failed(ask)
    link.could_not_ask(ask)
    assert link.ask_failed(ask) and not link.ask_failed(CheckpointBeforeResize(2, 9.0))
    link.checkpoint_registered(7.0)
    link.checkpoint_registered(6.0)  # a late, older report never moves it back
    assert link.registered_at == 7.0


def test_a_restart_is_sized_without_the_nodes_left_out() -> None:
    reserved = {"a": {"CPU": 1.0}, "b": {"CPU": 1.0}, "c": {"CPU": 2.0}}
    assert without_nodes(reserved, {"b", "z"}) == {"a": {"CPU": 1.0}, "c": {"CPU": 2.0}}
    assert without_nodes(reserved, set()) == reserved
    assert without_nodes(None, {"a"}) is None
    assert without_nodes({}, {"a"}) == {}
