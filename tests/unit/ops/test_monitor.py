"""ops/monitor.py: the Prometheus it starts finds raylift's rules and dashboards."""

from __future__ import annotations

from pathlib import Path

from raylift.ops import monitor
from raylift.testing import REPO_ROOT


def test_rules_and_dashboards_are_the_checkouts_own() -> None:
    assert monitor.RULES_DIR == REPO_ROOT / "cluster" / "prometheus" / "rules"
    assert any(p.suffix == ".yml" for p in monitor.RULES_DIR.iterdir())
    assert monitor.DASHBOARDS_DIR == REPO_ROOT / "dashboards"
    assert any(p.suffix == ".json" for p in monitor.DASHBOARDS_DIR.iterdir())


def test_the_config_loads_every_rule_file(tmp_path: Path) -> None:
    rules = sorted(monitor.RULES_DIR.glob("*.yml"))
    text = monitor.config_text(tmp_path / "targets.json", rules, 5)
    assert all(str(path) in text for path in rules)
