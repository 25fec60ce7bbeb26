"""The training display: what it prints from the reported metrics."""

from __future__ import annotations

import io

from rich.console import Console


def test_the_display_prints_the_trainable_share_once() -> None:
    from raylift.cli.display import TrainDisplay

    out = io.StringIO()
    display = TrainDisplay(Console(file=out, force_terminal=False), "t")
    display.update({"finetune": "trainable 7.0% of parameters (1 of 2)"})
    assert "fine-tuning: trainable 7.0% of parameters" in out.getvalue()
    assert "finetune" not in display.latest
