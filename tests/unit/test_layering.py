"""The parts of the package import only downward (docs/design.md, section 2), without cycles.

Read from the source (every import statement, including ones inside functions), so that a
convenience import that crosses a layer fails here instead of tangling the parts.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import golem_graphene

PACKAGE = Path(golem_graphene.__file__).parent

# What each part may import besides itself and the shared leaf modules.
ALLOWED: dict[str, set[str]] = {
    "attestation": set(),
    "gramine": set(),
    "images": set(),
    "protocol": {"attestation", "images"},
    "sealing": {"attestation", "protocol", "images"},
    "host": {"attestation", "protocol", "sealing", "gramine", "images"},
    "requestor": {"attestation", "protocol", "sealing", "gramine", "host", "images"},
    "provider": {"attestation", "protocol", "sealing", "gramine", "host", "images"},
    "runtime": {"attestation", "protocol", "sealing", "gramine", "host", "images"},
}
LEAVES = {"errors", "limits", "canonical_json", "_internal", "_lazy", "_batched_write", "_logging"}


def _module(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {name for name in found if name.startswith("golem_graphene.")}


def _part(module: str) -> str:
    return module.split(".")[1]


def test_parts_import_only_downward() -> None:
    wrong: list[str] = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = _module(path)
        if "." not in module:
            continue
        part = _part(module)
        for target in _imports(path):
            other = _part(target)
            if other == part or other in LEAVES or other == "__version__":
                continue
            if part in LEAVES and other not in LEAVES:
                wrong.append(f"{module} (a leaf) imports {target}")
            elif part in ALLOWED and other not in ALLOWED[part]:
                wrong.append(f"{module} ({part}) imports {target} ({other})")
    assert wrong == [], "\n".join(wrong)


def test_no_import_cycles_between_modules() -> None:
    # Every import counts, also under TYPE_CHECKING and inside functions: a cycle hidden there
    # still ties two modules into one.
    modules = {_module(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = defaultdict(set)
    for name, path in modules.items():
        for target in _imports(path):
            if target in modules and target != name and not name.startswith(target + "."):
                graph[name].add(target)
    cycles: list[list[str]] = []
    state: dict[str, int] = {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append([*stack[stack.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt, [*stack, nxt])
        state[node] = 2

    for node in sorted(modules):
        if node not in state:
            visit(node, [node])
    assert cycles == [], "\n".join(" -> ".join(c) for c in cycles)
