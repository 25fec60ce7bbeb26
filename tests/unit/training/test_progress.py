"""Progress on the driver: recovery records from the workers' reports (no Ray)."""

from __future__ import annotations

from raylift.training.progress import RecoveryTracker, clean_metrics


def test_recovery_records_steps_lost_and_the_notice_before_it() -> None:
    tracker = RecoveryTracker()
    base = {"restarts": 0, "world_size": 2}
    assert tracker.observe({**base, "step": 40}) is None
    assert tracker.observe({**base, "step": 47, "checkpoint_reason": "sigterm"}) is None
    assert tracker.observe({**base, "step": 48}) is None
    recovery = tracker.observe(
        {"restarts": 1, "world_size": 1, "step": 48, "resumed_from_step": 47}
    )
    assert recovery is not None
    assert (recovery["kind"], recovery["from_workers"], recovery["to_workers"]) == ("resize", 2, 1)
    assert (recovery["steps_lost"], recovery["notice"]) == (1, "sigterm")
    again = tracker.observe({"restarts": 2, "world_size": 1, "step": 61, "resumed_from_step": 60})
    assert again is not None and again["kind"] == "restart" and again["notice"] is None


def test_two_restarts_from_the_same_checkpoint_are_two_recoveries() -> None:
    tracker = RecoveryTracker()
    assert tracker.observe({"attempt": "a", "restarts": 0, "world_size": 2, "step": 30}) is None
    # Both later attempts resume from the checkpoint at step 20 (restarts 0 -> 1).
    resumed = {"restarts": 1, "world_size": 2, "resumed_from_step": 20}
    first = tracker.observe({**resumed, "attempt": "b", "step": 21})
    assert tracker.observe({**resumed, "attempt": "b", "step": 25}) is None
    second = tracker.observe({**resumed, "attempt": "c", "step": 21})
    assert first is not None and second is not None
    assert (first["steps_lost"], second["steps_lost"]) == (10, 5)


def test_clean_metrics_drops_bookkeeping_and_stringifies_the_rest() -> None:
    cleaned = clean_metrics(
        {"step": 3, "checkpoint": "/x", "_timestamp": 1, "recovery": {}, "odd": object()}
    )
    assert set(cleaned) == {"step", "odd"} and isinstance(cleaned["odd"], str)
