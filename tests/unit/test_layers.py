"""The import contract: no raylift module imports up the layers, and nothing imports in a cycle.

The layers and the rules are raylift.testing.layers (``python -m raylift.testing.layers``
prints the table). Every import in the source counts, inside functions too; the
source is parsed, not imported. A failure lists each offending import as
``module -> imported (line N)`` with the rule it breaks.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from raylift.testing import layers

IMPORTS = layers.all_imports()


def _report(problems: list[str], rule: str) -> str:
    return f"{len(problems)} {rule}:\n  " + "\n  ".join(problems)


def test_every_package_and_module_has_a_layer() -> None:
    unplaced = layers.unplaced_units()
    assert not unplaced, f"add these to raylift.testing.layers.LAYERS: {', '.join(unplaced)}"
    missing = layers.missing_units()
    assert not missing, f"LAYERS lists units that no longer exist: {', '.join(missing)}"


def test_no_import_points_up_the_layers() -> None:
    problems = layers.layer_violations(IMPORTS)
    if problems:
        pytest.fail(
            _report(problems, "imports against the layers (lowest first: see LAYERS)"),
            pytrace=False,
        )


def test_no_cycle_between_packages() -> None:
    problems = layers.unit_cycles(IMPORTS)
    if problems:
        pytest.fail(_report(problems, "cycles between packages"), pytrace=False)


def test_no_cycle_between_the_modules_of_a_package() -> None:
    problems = layers.module_cycles(IMPORTS)
    if problems:
        pytest.fail(_report(problems, "cycles between the modules of one package"), pytrace=False)


def test_the_contract_reads_the_whole_tree() -> None:
    assert len(IMPORTS) > 200  # about 300 imports between raylift's modules
    assert {layers.unit_of(i.module) for i in IMPORTS} >= {"training", "specs", "cli"}


def _package(root: Path, files: dict[str, str]) -> Path:
    package = root / "raylift"
    for name, text in files.items():
        path = package / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return package


@pytest.fixture
def made_up(tmp_path: Path) -> Path:
    return _package(
        tmp_path,
        {
            "__init__.py": "from raylift.errors import RayliftError\n",
            "errors.py": "class RayliftError(Exception): ...\n",
            "data/__init__.py": "",
            "data/base.py": "def f():\n    from raylift.models import base\n",  # sideways
            "models/__init__.py": "from . import base\n",
            "models/base.py": "from ..data.base import f\nimport raylift.errors\n",
            "specs/__init__.py": "",
            "specs/a.py": "from raylift.specs import b\n",
            "specs/b.py": (
                "from typing import TYPE_CHECKING\n"
                "if TYPE_CHECKING:\n    from raylift.specs.a import x\n"
            ),
            "training/__init__.py": "",
            "training/loop.py": "import importlib\nimportlib.import_module('raylift.cli.main')\n",
            "cli/__init__.py": "",
            "cli/main.py": "from raylift import __version__\nfrom raylift.testing import helpers\n",
            "testing/__init__.py": "",
            "testing/helpers.py": "import raylift\nfrom raylift.cli import main\n",
        },
    )


def test_upward_sideways_and_dynamic_imports_are_found(made_up: Path) -> None:
    """The checker itself, on a made-up package: imports in functions, relative imports,
    ``TYPE_CHECKING`` blocks and ``importlib.import_module`` all count."""
    imports = layers.all_imports(made_up)
    problems = layers.layer_violations(imports)
    assert problems == [
        "raylift.cli.main -> raylift (line 1): upward: cli (layer 9) may not import raylift "
        "(layer 10)",
        "raylift.cli.main -> raylift.testing.helpers (line 2): upward: cli (layer 9) may not "
        "import testing (layer 10)",
        "raylift.data.base -> raylift.models.base (line 2): within layer 2 (data, models), "
        "data may not import models, listed after it",
        "raylift.training.loop -> raylift.cli.main (line 2): upward: training (layer 5) may not "
        "import cli (layer 9)",
    ]
    assert layers.unit_cycles(imports) == [
        "cycle units: raylift.cli.main -> raylift.testing.helpers (line 2); "
        "raylift.testing.helpers -> raylift.cli.main (line 2)",
        "cycle units: raylift.data.base -> raylift.models.base (line 2); "
        "raylift.models.base -> raylift.data.base (line 1)",
    ]
    assert layers.module_cycles(imports) == [
        "cycle in specs: raylift.specs.a -> raylift.specs.b (line 1); "
        "raylift.specs.b -> raylift.specs.a (line 3)"
    ]
    assert layers.unplaced_units(made_up) == []
    assert "storage" in layers.missing_units(made_up)


def test_the_layer_table_renders_for_the_docs() -> None:
    table = layers.layer_table(markdown=True)
    assert table.splitlines()[2].startswith("| 10 | raylift, testing |")
    assert table.splitlines()[-1].startswith("| 0 | version, errors, storage, registry, ports |")
