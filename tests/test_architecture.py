"""The package's import graph obeys the layer order stated in DESIGN.md.

Every ``import`` and ``from ... import`` in ``kahlergeom/`` is read with ``ast`` (module level
and inside functions alike). Two rules:

1. A subpackage imports only subpackages of strictly lower tiers (``LAYERS`` below, the same
   order as DESIGN.md's diagram).
2. The graph of modules is acyclic (within a package too, e.g. two solver files may not import
   each other).
"""

from __future__ import annotations

import ast
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PKG = ROOT / "kahlergeom"

# Lowest first. Keep in sync with DESIGN.md (test_design_md_states_the_same_order checks it).
LAYERS: list[set[str]] = [
    {"_checks", "_dist", "_linalg"},
    {"wirtinger"},
    {"decoders"},
    {"potentials"},
    {"curvature", "symbolic"},
    {"geodesics"},
    {"manifolds"},
    {"volume", "surrogates"},
    {"sampling"},
    {"data", "vae"},
    {"distributed", "evaluation", "interop", "testing"},
    {"demo"},
    {"cli"},
]
TIER = {name: i for i, tier in enumerate(LAYERS) for name in tier}


def _module_name(path: pathlib.Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports(path: pathlib.Path) -> list[tuple[str, int]]:
    """Absolute names of the kahlergeom modules a file imports, with line numbers."""
    this = _module_name(path)
    package = this if path.name == "__init__.py" else this.rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out += [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            out.append((mod, node.lineno))
            # `from kahlergeom import sampling` / `from kahlergeom.x import _y` name modules too
            for a in node.names:
                candidate = f"{mod}.{a.name}"
                if _path_of(candidate) is not None:
                    out.append((candidate, node.lineno))
    return [(m, line) for m, line in out if m == "kahlergeom" or m.startswith("kahlergeom.")]


def _path_of(module: str) -> pathlib.Path | None:
    p = ROOT.joinpath(*module.split("."))
    if (p / "__init__.py").exists():
        return p / "__init__.py"
    if p.with_suffix(".py").exists():
        return p.with_suffix(".py")
    return None


def _files():
    return sorted(PKG.rglob("*.py"))


def _subpackage(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def test_every_subpackage_has_a_tier():
    names = {p.name.removesuffix(".py") for p in PKG.iterdir() if p.name != "__init__.py"}
    names = {n for n in names if not n.startswith("__")}
    assert names <= set(TIER), f"add these to LAYERS and DESIGN.md: {sorted(names - set(TIER))}"


def test_imports_follow_the_layer_order():
    bad = []
    for f in _files():
        src = _subpackage(_module_name(f))
        if src is None:  # kahlergeom/__init__.py: the top level may import anything
            continue
        for mod, line in _imports(f):
            dst = _subpackage(mod)
            if dst is None or dst == src:
                continue
            if TIER[dst] >= TIER[src]:
                bad.append(f"{f.relative_to(ROOT)}:{line} imports {mod} ({src} -> {dst})")
    assert not bad, "imports against the layer order:\n" + "\n".join(bad)


def test_module_graph_is_acyclic():
    graph: dict[str, set[str]] = {}
    for f in _files():
        src = _module_name(f)
        own_package = src if f.name == "__init__.py" else src.rpartition(".")[0]
        targets = set()
        for mod, _ in _imports(f):
            if _path_of(mod) is None or mod == src:
                continue
            # A submodule importing its own package's __init__ re-export is a cycle only in
            # name; the rule is that it should import the defining module instead.
            if mod == own_package or own_package.startswith(mod + "."):
                continue
            targets.add(mod)
        graph[src] = targets
    # Depth-first search for a cycle; report it as a path.
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str):
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycle = stack[stack.index(nxt) :] + [nxt]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if state.get(nxt) is None:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)


def test_checker_catches_a_violation(tmp_path):
    """The parser sees function-level imports (a checker that cannot fail is no checker)."""
    src = tmp_path / "kahlergeom" / "wirtinger"
    src.mkdir(parents=True)
    (src / "_x.py").write_text("def f():\n    from kahlergeom.manifolds import FisherManifold\n")
    global ROOT
    saved = ROOT
    try:
        ROOT = tmp_path
        found = _imports(src / "_x.py")
    finally:
        ROOT = saved
    assert ("kahlergeom.manifolds", 2) in found


def test_design_md_states_the_same_order():
    text = (ROOT / "DESIGN.md").read_text(encoding="utf-8")
    block = re.search(r"```\n(.*?)```", text, re.S).group(1)
    order = re.findall(r"[a-z_]+", block)
    positions = {}
    for name in TIER:
        assert name in order, f"DESIGN.md's layer diagram does not name {name}"
        positions[name] = order.index(name)
    for a in TIER:
        for b in TIER:
            if TIER[a] < TIER[b]:
                assert positions[a] < positions[b], f"DESIGN.md puts {b} before {a}"


def test_no_reference_to_a_document_outside_the_repository():
    hits = [
        str(p.relative_to(ROOT))
        for d in ("kahlergeom", "docs", "tests", "examples", "benchmarks")
        for p in (ROOT / d).rglob("*")
        if p.is_file()
        and p.suffix in {".py", ".md"}
        and p.name != "test_architecture.py"
        and "MATH" + ".md" in p.read_text(encoding="utf-8", errors="ignore")
    ]
    assert not hits, f"cite docs/conventions.md instead of the outside MATH.md: {hits}"
