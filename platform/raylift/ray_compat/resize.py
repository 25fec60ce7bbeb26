"""Pure decisions for resizing a running worker group: checkpoint first, then resize. No Ray.

The patched elastic policy (``elastic.py``) decides with these; raylift's controller
callback (``raylift.training.recovery``) acts on them. They meet in a ``ResizeLink``.
"""

from __future__ import annotations

from dataclasses import dataclass

# Longest a resize waits for the checkpoint it asked for; then it goes ahead anyway.
RESIZE_CHECKPOINT_WAIT_S = 30.0


@dataclass(frozen=True)
class CheckpointBeforeResize:
    """The policy's request: the workers checkpoint, then the group is resized to ``num_workers``.

    ``decided_at``: when the policy decided it (``time.monotonic()``).
    """

    num_workers: int
    decided_at: float


def checkpoint_first(
    proposed: int | None, current: int, *, now: float, can_ask: bool
) -> CheckpointBeforeResize | None:
    """A request to checkpoint when Ray's policy resizes a running group (``proposed``
    workers, None: no resize) and someone can ask the workers; None: pass Ray's decision on."""
    if proposed is None or proposed == current or not can_ask:
        return None
    return CheckpointBeforeResize(num_workers=proposed, decided_at=now)


def resize_due(
    ask: CheckpointBeforeResize,
    *,
    registered_at: float,
    ask_failed: bool,
    now: float,
    wait_s: float = RESIZE_CHECKPOINT_WAIT_S,
) -> bool:
    """Whether the held resize goes ahead now: a resize checkpoint was registered since the
    request (every rank reported it), the workers could not be asked, or the wait is over."""
    return ask_failed or registered_at >= ask.decided_at or now - ask.decided_at > wait_s


@dataclass
class ResizeLink:
    """What the patched policy and raylift's callback share in one Train controller process.

    The policy posts its request (``post``); the callback takes it (``take``) right after
    the decision, asks the workers, and reports back a failed ask (``could_not_ask``) and
    each registered resize checkpoint (``checkpoint_registered``), which the policy reads
    at its next decisions.
    """

    outbox: CheckpointBeforeResize | None = None
    failed: CheckpointBeforeResize | None = None
    registered_at: float = float("-inf")

    def post(self, ask: CheckpointBeforeResize) -> None:
        self.outbox = ask

    def take(self) -> CheckpointBeforeResize | None:
        ask, self.outbox = self.outbox, None
        return ask

    def could_not_ask(self, ask: CheckpointBeforeResize) -> None:
        self.failed = ask

    def ask_failed(self, ask: CheckpointBeforeResize) -> bool:
        return self.failed == ask

    def checkpoint_registered(self, at: float) -> None:
        self.registered_at = max(self.registered_at, at)
