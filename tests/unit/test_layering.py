"""The import direction of lib/livemig, read from the code (docs/architecture.md, "Layers").

Every import counts, at any depth (the lazy ones inside functions too): a module imports
only its own package and the layers below it. virt/ is the libvirt layer: it knows nothing of
OCF's codes, errors, environment or state file, nor of Pacemaker, DRBD or the agent.
Every module is imported by another one, or is an entry point: no dead code ships.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Dict, Iterator, List, Set, Tuple

LIB = Path(__file__).resolve().parents[2] / "lib"

#: lowest first; a module's layer is that of the longest prefix of its name listed here
LAYERS: List[Tuple[str, ...]] = [
    # foundations, one home: bounded reads and runs, the domain model, names, XML safety, and of
    # ocf/ what every layer uses: the clock (deadline), logs, the environment's text
    ("livemig", "livemig.files", "livemig.bounded", "livemig.run", "livemig.names", "livemig.domain_xml",
     "livemig.xmlsafe", "livemig.ocf.deadline", "livemig.ocf.logs", "livemig.ocf.environment"),
    ("livemig.ocf",),  # the OCF framework: codes, errors, environment, meta-data, state file, dispatch
    ("livemig.virt", "livemig.pacemaker"),  # libvirt; Pacemaker's CIB, naming, utilization, config
    ("livemig.drbd",),  # DRBD's tools and state, the guard (it reads the CIB's fence constraints)
    ("livemig.agents",),  # every OCF decision
    ("livemig.check",),  # livemig check's rows
    ("livemig.cli",),  # argument parsing and printing
    ("livemig.__main__",),
]

#: what virt/ may never import (on top of every layer above its own)
VIRT_FORBIDDEN = ("livemig.ocf.codes", "livemig.ocf.errors", "livemig.ocf.environment", "livemig.ocf.statefile",
                  "livemig.ocf.agent", "livemig.ocf.metadata", "livemig.pacemaker", "livemig.drbd")

#: what runs a module without another one importing it: the agent's executable (agents/VirtualDomain),
#: the `livemig` console script (setup.cfg) and `python3 -m livemig`
ENTRY_POINTS = {"livemig.agents.virtualdomain", "livemig.agents.libvirt_hook", "livemig.cli.main", "livemig.__main__"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(LIB).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> Dict[str, Path]:
    return {module_name(p): p for p in sorted((LIB / "livemig").rglob("*.py"))}


def imports(name: str, path: Path) -> Iterator[str]:
    """Every livemig module ``name`` imports, at any depth (``from a import b``: a.b if b is a module)."""
    known = modules()
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package[:len(package) - node.level + 1] + ([base] if base else []))
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
        else:
            continue
        yield from (t for t in targets if t == "livemig" or t.startswith("livemig."))


def layer(name: str) -> Tuple[int, str]:
    """(rank, its home: the prefix that placed it; the foundations are one home)."""
    best = (-1, "")
    for rank, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if (name == prefix or name.startswith(prefix + ".")) and len(prefix) > len(best[1]):
                best = (rank, prefix)
    assert best[0] >= 0, f"{name} is in no layer: add it to LAYERS"
    return (0, "foundations") if best[0] == 0 else best


def edges() -> Set[Tuple[str, str]]:
    return {(name, target) for name, path in modules().items() for target in imports(name, path) if target != name}


def test_no_module_imports_a_higher_layer_or_a_sibling_package() -> None:
    wrong = []
    for name, target in sorted(edges()):
        (rank, home), (target_rank, target_home) = layer(name), layer(target)
        if target_home == home or target_rank < rank:
            continue
        wrong.append(f"{name} (layer {rank}, {home}) imports {target} (layer {target_rank}, {target_home})")
    assert not wrong, "\n".join(wrong)


def test_virt_is_the_libvirt_layer_only() -> None:
    found = {(name, target) for name, target in edges()
             if name.startswith("livemig.virt") and target.startswith(VIRT_FORBIDDEN)}
    assert not found, f"imports out of virt/: {sorted(found)}"


def test_every_module_is_imported_or_an_entry_point() -> None:
    imported = {target for _, target in edges()}
    unused = sorted(name for name, path in modules().items()
                    if name not in imported and name not in ENTRY_POINTS and path.name != "__init__.py")
    assert not unused, f"nothing imports {unused}: remove them (or move them to tests/ if a test needs them)"


def test_drbd_knows_nothing_of_libvirt() -> None:
    found = sorted((n, t) for n, t in edges() if n.startswith("livemig.drbd") and t.startswith("livemig.virt"))
    assert not found, found


def test_virt_migration_planning_is_pure() -> None:
    """Options, URIs and the plan (what `livemig check` calls too) raise virt's own errors only."""
    planning = ("livemig.virt.options", "livemig.virt.migrate_options", "livemig.virt.migration_uri",
                "livemig.virt.migration_plan", "livemig.virt.errors")
    found = sorted((n, t) for n, t in edges() if n in planning and not t.startswith(("livemig.virt", "livemig.names")))
    assert not found, found


def test_no_import_cycles() -> None:
    graph: Dict[str, Set[str]] = {}
    for name, target in edges():
        graph.setdefault(name, set()).add(target)
    seen: Set[str] = set()
    stack: List[str] = []

    def visit(node: str) -> None:
        if node in stack:
            raise AssertionError("import cycle: " + " -> ".join(stack[stack.index(node):] + [node]))
        if node in seen:
            return
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            visit(nxt)
        stack.pop()
        seen.add(node)

    for node in sorted(graph):
        visit(node)


def test_a_bad_import_is_seen(tmp_path: Path) -> None:
    """The reader of imports is not blind: a lazy import of the agent inside virt/ is found."""
    module = tmp_path / "livemig" / "virt" / "probe.py"
    module.parent.mkdir(parents=True)
    module.write_text("def f():\n    from livemig.agents import virtualdomain\n    from ..ocf import codes\n")
    found = set(imports("livemig.virt.probe", module))
    assert {"livemig.agents.virtualdomain", "livemig.ocf.codes"} <= found, found
    assert layer("livemig.virt.probe")[0] < layer("livemig.agents.virtualdomain")[0]
