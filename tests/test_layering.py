"""The package's import graph, read from the source (imports inside functions included): no module imports itself
back through others, and no part imports a part above it."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "hfprune"
# Each part may import only the parts before it.
ORDER = ["errors", "plan", "sizing", "workdir", "hardware", "settings", "disk", "hub", "datasets_io", "tiny",
         "scoring", "recovery", "evaluation", "publish", "api", "gguf_export", "pipeline", "demo", "cli_options",
         "commands", "cli", "__main__"]


def _modules() -> dict[str, Path]:
    mods = {}
    for f in PACKAGE.rglob("*.py"):
        parts = f.relative_to(PACKAGE.parent).with_suffix("").parts
        mods[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = f
    return mods


def _imports(mods: dict[str, Path]) -> dict[str, set[str]]:
    """module -> the hfprune modules it imports (a name imported from a package counts as the package)."""
    edges = {}
    for name, path in mods.items():
        here = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = ".".join(here[:len(here) - node.level + 1] + [node.module or ""]) if node.level \
                    else node.module
                targets = [f"{base.rstrip('.')}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                continue
            for t in targets:
                while t and t not in mods:
                    t = t.rpartition(".")[0]
                if t and t != name and not name.startswith(t + "."):  # a module's own package is not a dependency
                    found.add(t)
        edges[name] = found
    return edges


def _part(module: str) -> str:
    return module.split(".")[1] if "." in module else module


def test_no_import_cycles():
    edges = _imports(_modules())
    state: dict[str, int] = {}
    cycles = []

    def visit(m, path):
        state[m] = 1
        for t in edges[m]:
            if state.get(t) == 1:
                cycles.append(path[path.index(t):] + [t])
            elif t not in state:
                visit(t, path + [t])
        state[m] = 2

    for m in edges:
        if m not in state:
            visit(m, [m])
    assert not cycles, cycles


def test_no_part_imports_a_part_above_it():
    rank = {part: i for i, part in enumerate(ORDER)}
    edges = _imports(_modules())
    parts = {_part(m) for m in edges if m != "hfprune"} - {"resources"}
    assert parts <= set(rank), f"place {sorted(parts - set(rank))} in ORDER"
    upward = sorted({(_part(m), _part(t)) for m, ts in edges.items() for t in ts
                     if m != "hfprune" and t != "hfprune" and rank[_part(m)] < rank[_part(t)]})
    assert not upward, upward
