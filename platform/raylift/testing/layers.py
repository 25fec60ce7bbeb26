"""raylift's layers, and the import contract that keeps them (tests/unit/test_layers.py).

``LAYERS`` lists raylift's packages and top-level modules ("units"), lowest first. A
module may import from its own unit and from units of lower layers; within one layer a
unit may import only the units listed before it (``models`` may import ``data``, not
the reverse). The public API (``raylift/__init__.py``) and ``raylift.testing`` sit
above every layer, so nothing else in raylift imports them. Inside one unit, imports
are free, but its modules must not import each other in a cycle.

Every import counts: at module level, inside functions, under ``if TYPE_CHECKING:``,
and ``importlib.import_module("raylift....")`` with a literal name. The source is
parsed (``ast``), never imported. ``python -m raylift.testing.layers`` prints the
layer table (``--markdown`` for docs) and every violation found.
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

PACKAGE = "raylift"
PACKAGE_DIR: Path = Path(__file__).resolve().parents[1]
API = "raylift"  # the unit of raylift/__init__.py, the lazy public API

LAYERS: tuple[tuple[str, ...], ...] = (
    ("version", "errors", "storage", "registry", "ports"),
    ("artifacts",),
    ("data", "models"),
    ("specs",),
    ("ray_compat",),
    ("training",),
    ("tuning",),
    ("serving",),
    ("ops",),
    ("cli",),
    (API, "testing"),  # above all: raylift/__init__.py, then raylift.testing
)
"""The layers, lowest first; within a layer, a unit may import the ones before it."""

LAYER_NOTES: dict[str, str] = {
    "version": "the version string",
    "errors": "the one error hierarchy",
    "storage": "local and cloud paths",
    "registry": "named builders with typed params",
    "ports": "free local ports",
    "artifacts": "what runs leave on storage: exports, sealed folders, run records",
    "data": "data sources",
    "models": "model sources, LoRA",
    "specs": "one pydantic model per YAML kind; the resolved job",
    "ray_compat": "every use of a private Ray name",
    "training": "driver, trainer, per-worker loop, checkpointing",
    "tuning": "sweeps: trials over the same trainer",
    "serving": "the Serve application",
    "ops": "what talks to clusters",
    "cli": "one module per noun",
    API: "raylift/__init__.py, the lazy public API",
    "testing": "helpers shared by tests and benchmarks",
}


@dataclass(frozen=True)
class Import:
    """One import statement's target inside raylift."""

    module: str  # the importing module, dotted (raylift.models.lora)
    imported: str  # the imported raylift module, dotted (raylift.specs.job)
    line: int

    def __str__(self) -> str:
        return f"{self.module} -> {self.imported} (line {self.line})"


def unit_of(module: str) -> str:
    """The unit a dotted raylift module belongs to: ``raylift.specs.job`` -> ``specs``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else API


def rank_of(unit: str) -> tuple[int, int] | None:
    """(layer, position in the layer) of ``unit``; None when the table does not list it."""
    for layer, units in enumerate(LAYERS):
        if unit in units:
            return layer, units.index(unit)
    return None


def module_files(package_dir: Path = PACKAGE_DIR) -> dict[str, Path]:
    """Every module of the package, by dotted name (``__init__`` files name the package)."""
    found = {}
    for path in sorted(package_dir.rglob("*.py")):
        parts = path.relative_to(package_dir.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def imports_of(module: str, path: Path, modules: set[str]) -> Iterator[Import]:
    """The raylift modules ``module`` (the file ``path``) imports, anywhere in the file."""
    is_package = path.name == "__init__.py"
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if _inside(alias.name):
                    yield Import(module, _existing(alias.name, modules), node.lineno)
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(module, is_package, node.module, node.level)
            if base is None or not _inside(base):
                continue
            for alias in node.names:
                # ``from raylift.training import sharding`` imports the submodule.
                sub = f"{base}.{alias.name}"
                target = sub if sub in modules else _existing(base, modules)
                yield Import(module, target, node.lineno)
        elif isinstance(node, ast.Call) and _is_import_module(node.func):
            arg = node.args[0] if node.args else None
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str) and _inside(arg.value):
                yield Import(module, _existing(arg.value, modules), node.lineno)


def _inside(name: str) -> bool:
    return name == PACKAGE or name.startswith(PACKAGE + ".")


def _existing(name: str, modules: set[str]) -> str:
    """``name``, or its nearest parent that is a module (an attribute was imported)."""
    while name not in modules and "." in name:
        name = name.rsplit(".", 1)[0]
    return name


def _absolute(module: str, is_package: bool, name: str | None, level: int) -> str | None:
    if level == 0:
        return name
    parts = module.split(".") if is_package else module.split(".")[:-1]
    if level > 1:
        parts = parts[: -(level - 1)] if level - 1 < len(parts) else []
    if not parts:
        return None
    return ".".join([*parts, name] if name else parts)


def _is_import_module(func: ast.expr) -> bool:
    if isinstance(func, ast.Attribute):
        return func.attr == "import_module"
    return isinstance(func, ast.Name) and func.id == "import_module"


def all_imports(package_dir: Path = PACKAGE_DIR) -> list[Import]:
    """Every import between raylift's modules, in file and line order."""
    files = module_files(package_dir)
    names = set(files)
    return [imp for module, path in files.items() for imp in imports_of(module, path, names)]


def unplaced_units(package_dir: Path = PACKAGE_DIR) -> list[str]:
    """Units found under the package that ``LAYERS`` does not list."""
    return sorted({unit_of(m) for m in module_files(package_dir)} - _listed())


def missing_units(package_dir: Path = PACKAGE_DIR) -> list[str]:
    """Units ``LAYERS`` lists that no longer exist under the package."""
    return sorted(_listed() - {unit_of(m) for m in module_files(package_dir)})


def _listed() -> set[str]:
    return {unit for units in LAYERS for unit in units}


def layer_violations(imports: list[Import]) -> list[str]:
    """Imports that point up the layers, or sideways against a layer's order."""
    found = []
    for imp in imports:
        source, target = unit_of(imp.module), unit_of(imp.imported)
        src, dst = rank_of(source), rank_of(target)
        if source == target or src is None or dst is None:
            continue  # unplaced units are reported by unplaced_units
        if dst[0] > src[0]:
            found.append(f"{imp}: upward: {_where(source)} may not import {_where(target)}")
        elif dst[0] == src[0] and dst[1] > src[1]:
            found.append(
                f"{imp}: within layer {src[0]} ({', '.join(LAYERS[src[0]])}), "
                f"{source} may not import {target}, listed after it"
            )
    return found


def _where(unit: str) -> str:
    rank = rank_of(unit)
    return f"{unit} (layer {rank[0]})" if rank else unit


def unit_cycles(imports: list[Import]) -> list[str]:
    """Cycles between units (packages and top-level modules), one line each."""
    edges = {(unit_of(i.module), unit_of(i.imported)): i for i in imports}
    graph: dict[str, dict[str, Import]] = {}
    for (source, target), imp in edges.items():
        if source != target:
            graph.setdefault(source, {})[target] = imp
    return [_describe(cycle, graph, "units") for cycle in _cycles(graph)]


def module_cycles(imports: list[Import]) -> list[str]:
    """Cycles between the modules of one unit, one line each."""
    graph: dict[str, dict[str, Import]] = {}
    for imp in imports:
        if unit_of(imp.module) == unit_of(imp.imported) and imp.module != imp.imported:
            graph.setdefault(imp.module, {}).setdefault(imp.imported, imp)
    return [_describe(c, graph, f"in {unit_of(c[0])}") for c in _cycles(graph)]


def _describe(cycle: list[str], graph: dict[str, dict[str, Import]], what: str) -> str:
    steps = [str(graph[a][b]) for a, b in zip(cycle, [*cycle[1:], cycle[0]], strict=True)]
    return f"cycle {what}: " + "; ".join(steps)


def _cycles(graph: dict[str, dict[str, Import]]) -> list[list[str]]:
    """One cycle through each strongly connected component of more than one node."""
    found = []
    for component in _components(graph):
        if len(component) < 2:
            continue
        start = min(component)
        found.append(_path_back(graph, start, set(component)))
    return sorted(found)


def _path_back(graph: dict[str, dict[str, Import]], start: str, inside: set[str]) -> list[str]:
    """A shortest cycle from ``start`` back to itself, staying inside its component."""
    previous: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for nxt in sorted(graph.get(node, {})):
                if nxt == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(previous[path[-1]])
                    return path[::-1]
                if nxt in inside and nxt not in previous:
                    previous[nxt] = node
                    following.append(nxt)
        frontier = following
    raise AssertionError(f"{start} is in a component without a cycle")  # pragma: no cover


def _components(graph: dict[str, dict[str, Import]]) -> list[list[str]]:
    """Tarjan's strongly connected components (iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    result: list[list[str]] = []
    nodes = sorted(set(graph) | {t for targets in graph.values() for t in targets})
    for root in nodes:
        if root in index:
            continue
        work = [(root, iter(sorted(graph.get(root, {}))))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    result.append(sorted(component))
            elif child not in index:
                index[child] = low[child] = len(index)
                stack.append(child)
                on_stack.add(child)
                work.append((child, iter(sorted(graph.get(child, {})))))
            elif child in on_stack:
                low[node] = min(low[node], index[child])
    return result


def layer_table(markdown: bool = False) -> str:
    """The layers, highest first, as plain text or a markdown table (for docs)."""
    rows = [
        (str(layer), ", ".join(units), "; ".join(LAYER_NOTES.get(u, "") for u in units))
        for layer, units in reversed(list(enumerate(LAYERS)))
    ]
    if not markdown:
        return "\n".join(f"{layer:>2}  {units:<40} {notes}" for layer, units, notes in rows)
    lines = ["| layer | units (a unit may import those before it) | what |", "|---|---|---|"]
    return "\n".join(
        [*lines, *(f"| {layer} | {units} | {notes} |" for layer, units, notes in rows)]
    )


def main(argv: list[str] | None = None) -> int:
    """Print the layer table and every violation; exit 1 when there is one."""
    parser = argparse.ArgumentParser(prog="python -m raylift.testing.layers")
    parser.add_argument("--markdown", action="store_true", help="the table as markdown")
    args = parser.parse_args(argv)
    print(layer_table(markdown=args.markdown))
    imports = all_imports()
    problems = [
        *(f"unit not in LAYERS: {unit}" for unit in unplaced_units()),
        *layer_violations(imports),
        *unit_cycles(imports),
        *module_cycles(imports),
    ]
    for problem in problems:
        print(problem, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
