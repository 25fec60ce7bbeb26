"""The SIGTERM handler defers the exit until a checkpoint is taken, then exits."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from typing import Any

import pytest

from raylift.training import interrupts as preemption


@pytest.fixture
def sigterm_handler() -> Iterator[list[int]]:
    """raylift's handler over a recording 'Ray' handler; restored afterwards."""
    calls: list[int] = []
    original = signal.signal(signal.SIGTERM, lambda signum, frame: calls.append(signum))
    assert preemption.install_sigterm_handler()
    yield calls
    signal.signal(signal.SIGTERM, original)
    preemption._sigterm.clear()
    preemption._release.clear()


def _deliver(sig: int = signal.SIGTERM) -> None:
    os.kill(os.getpid(), sig)
    time.sleep(0.05)  # the handler runs on this (main) thread


def test_sigterm_asks_for_one_checkpoint_instead_of_exiting(sigterm_handler: list[int]) -> None:
    check = preemption.InterruptCheck(rank=0, world=1)
    assert check.due(1) is None
    _deliver()
    assert sigterm_handler == []  # Ray's handler (exit) did not run yet
    assert preemption.sigterm_received()
    reason = None
    for step in range(2, 10):
        reason = reason or check.due(step)
    assert reason == "sigterm"
    assert all(check.due(step) is None for step in range(10, 40))  # only once


def test_after_the_checkpoint_the_process_exits_as_before(
    sigterm_handler: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    _deliver()
    with pytest.raises(SystemExit):
        preemption.release_sigterm()
        time.sleep(0.05)
    assert sigterm_handler == [signal.SIGTERM]


def test_no_checkpoint_in_time_exits_anyway(
    sigterm_handler: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(preemption.GRACE_ENV, "0.2")
    with pytest.raises(SystemExit):
        _deliver()
        time.sleep(2)
    assert sigterm_handler == [signal.SIGTERM]


def test_check_interval_grows_gradually_from_one_step() -> None:
    check = preemption.InterruptCheck(rank=0, world=1, interval_s=3600)
    checked: list[Any] = []
    for step in range(1, 100):
        if step >= check.next_check:
            checked.append(step)
        check.due(step)
    assert checked[:4] == [1, 3, 7, 15]  # doubling while steps are fast
    resumed = preemption.InterruptCheck(rank=0, world=1, start_step=500, interval_s=3600)
    assert resumed.next_check == 501 and resumed.due(501) is None
    assert resumed.next_check == 503  # counted from the step it resumed at


def test_a_resize_request_asks_for_one_checkpoint() -> None:
    check = preemption.InterruptCheck(rank=0, world=1)
    assert check.due(1) is None
    preemption.request_resize_checkpoint()  # what the controller runs on each worker
    reasons = [check.due(step) for step in range(2, 40)]
    assert [r for r in reasons if r] == ["resize"]


def test_sigterm_to_the_driver_becomes_one_stop_request(monkeypatch: pytest.MonkeyPatch) -> None:
    from raylift.training import interrupts as stop

    published: list[str] = []
    monkeypatch.setattr(stop, "request_stop", published.append)
    monkeypatch.setattr(stop, "clear_stop", lambda key: None)
    before = signal.getsignal(signal.SIGTERM)
    stopper = stop.StopOnSigterm(stop.new_key("digits"))
    with stopper.installed():
        assert not stopper.requested
        _deliver()
        deadline = time.monotonic() + 5
        while not published and time.monotonic() < deadline:
            time.sleep(0.05)
        assert stopper.requested and published == [stopper.key]
    assert signal.getsignal(signal.SIGTERM) is before  # the previous handler is back

    monkeypatch.setattr(stop, "stop_requested", lambda key: key in published)
    check = preemption.InterruptCheck(rank=0, world=1, stop_key=stopper.key)
    assert check.due(1) == "stop"
    other = preemption.InterruptCheck(rank=0, world=1, stop_key=stop.new_key("digits"))
    assert other.due(1) is None  # another run's key: not stopped
