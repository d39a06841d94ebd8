"""The house: imports inside ``src/lrsa`` form no cycle (counting imports inside functions too) and flow one
way between the stages: cli -> serving -> api -> training -> model -> features / rationales -> data.

``lrsa.api`` is the public facade (``LRSA``): serving and the command line use it, and it scores benchmark
splits through ``training.evaluate``. No import goes against the flow: the training loop scores its dev-best
checkpoint with the training-level pieces (``lrsa.model.lrsa.load_checkpoint``, ``training.evaluate``), not
with the facade.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src"
#: stage of each top-level part of the package: an import may only go to the same or a lower stage
STAGE = {"data": 0, "io": 0, "env": 0, "precision": 0, "config": 0,
         "features": 1, "rationales": 1, "model": 2, "training": 3, "api": 4, "serving": 5, "cli": 6,
         "__main__": 7, "": 4}  # "": the package root (``lrsa.__version__``, ``lrsa.LRSA``), a facade as api


def _graph() -> dict[str, set[str]]:
    mods: dict[str, Path] = {}
    for p in (SRC / "lrsa").rglob("*.py"):
        name = ".".join(p.relative_to(SRC).with_suffix("").parts)
        mods[name.removesuffix(".__init__")] = p
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for m, p in mods.items():
        pkg = m if p.name == "__init__.py" else m.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(p.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = pkg.split(".")
                    base = ".".join(parts[:len(parts) - node.level + 1] + ([base] if base else []))
                targets = [base] + [f"{base}.{a.name}" for a in node.names]
            else:
                continue
            graph[m] |= {t for t in targets if t in mods and t != m}
    return graph


def _stage(module: str) -> int:
    parts = module.split(".")
    return STAGE[parts[1] if len(parts) > 1 else ""]


def test_no_import_cycle_in_the_package():
    graph = _graph()
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        path.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                raise AssertionError("import cycle: " + " -> ".join(path[path.index(n):] + [n]))
            if n not in state:
                visit(n)
        path.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)


def test_imports_flow_one_way_between_the_stages():
    graph = _graph()
    upward = {(a, b) for a, bs in graph.items() for b in bs if _stage(b) > _stage(a)}
    assert not upward, sorted(upward)
