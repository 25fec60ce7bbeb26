"""``raylift report PATH``: PNG pictures and a markdown summary of a run or a sweep.

A run (a folder with ``raylift-run.json``): loss, the validation metric,
throughput and world size over time, from its ``metrics.jsonl``. A sweep (a
folder with ``sweep.json``): each trial's learning curve and the metric against
each hyperparameter. Everything is written next to ``report.md`` in the output
folder (default: ``<PATH>/report``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from raylift.artifacts.runs import RECORD_FILE, RunRecord, read_history
from raylift.errors import UsageError

SWEEP_RECORD = "sweep.json"


def write_report(path: str, out: str | None = None) -> Path:
    """Write the report for the run or sweep at ``path``; the markdown file's path."""
    root = Path(path).expanduser()
    target = Path(out).expanduser() if out else root / "report"
    if (root / SWEEP_RECORD).is_file():
        return _sweep_report(root, target)
    if (root / RECORD_FILE).is_file():
        return _run_report(root, target)
    raise UsageError(
        f"{path} is neither a run folder ({RECORD_FILE}) nor a sweep folder ({SWEEP_RECORD})",
        option="PATH",
    )


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # files only; no display
    import matplotlib.pyplot as plt

    return plt


def _run_report(root: Path, target: Path) -> Path:
    record = RunRecord.load(str(root))
    assert record is not None
    history = read_history(str(root))
    target.mkdir(parents=True, exist_ok=True)
    metric = (record.best_metric or {}).get("name") or record.spec.get("train", {}).get("metric")
    pictures = []
    if history:
        pictures.append(_run_figure(history, metric, target / "run.png", record.name))
    lines = [f"# Run {record.name}", "", f"- status: {record.status}"]
    lines += [f"- started: {record.started}", f"- finished: {record.finished or '-'}"]
    if record.best_metric:
        best = record.best_metric
        lines.append(f"- best {best.get('name')}: {best.get('value')} (step {best.get('step')})")
    if record.export:
        lines.append(f"- exported model: {record.export}")
    for recovery in record.recoveries:
        lines.append(
            f"- {recovery['time']} {recovery['kind']}: {recovery['from_workers']} -> "
            f"{recovery['to_workers']} workers, {recovery['steps_lost']} steps lost"
        )
    if not history:
        lines.append("- no metrics.jsonl in the run folder: nothing to draw")
    lines += ["", *[f"![{p.stem}]({p.name})" for p in pictures], ""]
    report = target / "report.md"
    report.write_text("\n".join(lines), encoding="utf-8")
    return report


def _run_figure(history: list[dict[str, Any]], metric: str | None, path: Path, title: str) -> Path:
    plt = _plt()
    t0 = min(e.get("time") or 0 for e in history) or 0
    panels = [
        ("train_loss", "training loss"),
        (metric, metric or "metric"),
        ("tokens_per_s" if any("tokens_per_s" in e for e in history) else "samples_per_s",
         "throughput"),
        ("world_size", "workers"),
    ]  # fmt: skip
    fig, axes = plt.subplots(2, 2, figsize=(11, 7))
    for axis, (key, label) in zip(axes.flat, panels, strict=True):
        points = [(e["time"] - t0, e[key]) for e in history if key and key in e and e.get("time")]
        if points:
            xs, ys = zip(*points, strict=True)
            axis.plot(xs, ys, marker="." if len(points) < 50 else None, drawstyle=(
                "steps-post" if key == "world_size" else "default"))  # fmt: skip
        axis.set_title(label)
        axis.set_xlabel("seconds since the first report")
        axis.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def _sweep_report(root: Path, target: Path) -> Path:
    summary = json.loads((root / SWEEP_RECORD).read_text(encoding="utf-8"))
    metric = summary["metric"]
    trials = summary["trials"]
    target.mkdir(parents=True, exist_ok=True)
    pictures = [_curves(root, trials, metric, target / "learning_curves.png")]
    keys = sorted({key for trial in trials for key in trial["config"]})
    for key in keys:
        pictures.append(_scatter(trials, key, metric, target / f"{_safe(key)}.png"))
    lines = [f"# Sweep {summary['sweep']}", "", f"{summary['mode']} {metric}", ""]
    lines += ["| # | trial | " + " | ".join(keys) + f" | best {metric} | status |"]
    lines += ["|---|---|" + "---|" * len(keys) + "---|---|"]
    for rank, trial in enumerate(trials, start=1):
        values = " | ".join(_fmt(trial["config"].get(key)) for key in keys)
        lines.append(
            f"| {rank} | {trial['trial']} | {values} | {_fmt(trial['best'])} | {trial['status']} |"
        )
    best = summary.get("best")
    if best:
        lines += ["", f"Best: trial {best['trial']}, exported model `{best.get('export')}`."]
    lines += ["", *[f"![{p.stem}]({p.name})" for p in pictures], ""]
    report = target / "report.md"
    report.write_text("\n".join(lines), encoding="utf-8")
    return report


def _curves(root: Path, trials: list[dict[str, Any]], metric: str, path: Path) -> Path:
    plt = _plt()
    fig, axis = plt.subplots(figsize=(8, 5))
    drawn = 0
    for trial in trials:
        history = read_history(os.path.join(root, "trials", trial["run"]))
        points = [(e["epoch"], e[metric]) for e in history if metric in e and "epoch" in e]
        if points:
            xs, ys = zip(*points, strict=True)
            axis.plot(xs, ys, marker="o", label=f"{trial['trial']} ({trial['status']})")
            drawn += 1
    axis.set_xlabel("epoch")
    axis.set_ylabel(metric)
    axis.set_title("learning curves")
    axis.grid(alpha=0.3)
    if drawn:
        axis.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def _scatter(trials: list[dict[str, Any]], key: str, metric: str, path: Path) -> Path:
    plt = _plt()
    fig, axis = plt.subplots(figsize=(6, 4))
    points = [(t["config"].get(key), t["best"]) for t in trials if t.get("best") is not None]
    numeric = all(isinstance(x, int | float) for x, _ in points)
    if points:
        xs = [x if numeric else str(x) for x, _ in points]
        axis.scatter(xs, [y for _, y in points])
        if numeric and key.endswith("lr") and min(xs) > 0:
            axis.set_xscale("log")
    axis.set_xlabel(key)
    axis.set_ylabel(f"best {metric}")
    axis.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def _safe(key: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in key)


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
