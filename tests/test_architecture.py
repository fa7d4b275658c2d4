"""The house rules of docs/architecture.md, read off the source's imports (no import runs).

- Only ``advrec/kernels/`` imports the compiled core ``advrec._core`` or a CUDA twin
  (``advrec.kernels.*_cuda``), and the kernels' private modules stay inside it.
- No import circle among advrec's modules, counting imports inside functions too.
- No private name (``_x``) crosses a package boundary: a subpackage's private modules and
  functions are used only inside that subpackage. Modules at the top (``advrec/_logging.py``,
  ``advrec/_checks.py``, ``advrec/_version.py``) are the library's shared internals.
- No star imports: every re-export is spelled out.
"""
from __future__ import annotations

import ast
from pathlib import Path
from typing import Dict, Iterator, List, NamedTuple, Optional, Set, Tuple

import pytest

ROOT = Path(__file__).resolve().parents[1]
# the rules are read off the checkout's sources (advrec/, csrc/): skipped for a copy of tests/ alone
pytestmark = pytest.mark.checkout
PKG = ROOT / "advrec"


class Import(NamedTuple):
    importer: str  # dotted module name
    target: str  # dotted name imported: a module, or module.attribute
    line: int


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def is_package(name: str) -> bool:
    return (ROOT.joinpath(*name.split(".")) / "__init__.py").exists()


COMPILED = {"advrec._core"}  # a module whether or not this checkout has built it in place


def is_module(name: str) -> bool:
    path = ROOT.joinpath(*name.split("."))
    return name in COMPILED or is_package(name) or path.with_suffix(".py").exists()


def modules() -> Dict[str, Path]:
    return {module_name(p): p for p in sorted(PKG.rglob("*.py"))}


def imports_of(name: str, path: Path) -> Iterator[Import]:
    """Every advrec import in the file, wherever it sits (module level or inside a function)."""
    here = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] == "advrec":
                    yield Import(name, a.name, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here.split(".")
                base = base[:len(base) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            if source.split(".")[0] != "advrec":
                continue
            for a in node.names:
                yield Import(name, source if a.name == "*" else f"{source}.{a.name}", node.lineno)


def all_imports() -> List[Import]:
    return [imp for name, path in modules().items() for imp in imports_of(name, path)]


def imported_module(target: str) -> str:
    """The module an import loads: ``a.b.c`` itself when it is a module, else ``a.b``."""
    return target if is_module(target) else target.rpartition(".")[0]


def inside(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


# --------------------------------------------------------------------------- the one door


def test_only_kernels_import_the_core_or_a_cuda_twin():
    bad = []
    for imp in all_imports():
        if inside(imp.importer, "advrec.kernels"):
            continue
        parts = imp.target.split(".")
        core = imp.target == "advrec._core" or imp.target.startswith("advrec._core.")
        twin = inside(imp.target, "advrec.kernels") and len(parts) > 2 and (
            parts[2].endswith("_cuda") or parts[2].startswith("_"))
        if core or twin:
            bad.append(f"{imp.importer}:{imp.line} imports {imp.target}")
    assert not bad, "only advrec/kernels/ may import _core, a CUDA twin or a kernels internal:\n" + "\n".join(bad)


def test_the_rule_catches_a_violation(tmp_path):
    """The scanner sees imports inside functions and relative imports of every depth."""
    src = tmp_path / "x.py"
    src.write_text("def f():\n    from .._core import topk_masked\n    from ..kernels import select_cuda\n")
    found = {i.target for i in imports_of("advrec.certify.x", src)}
    assert found == {"advrec._core.topk_masked", "advrec.kernels.select_cuda"}


def test_kernels_mirror_csrc():
    """Each kernel family of csrc/ has its module in advrec/kernels/, each .cu its *_cuda twin."""
    families = {"select": "select/topk.cpp", "pairs": "select/pairs.cpp", "certify": "certify/fm_certify.cpp",
                "perturb": "perturb/perturb.cpp", "bpr": "perturb/bpr_grad.cpp", "seq": "seq/cascade.cpp"}
    twins = {"select": "topk.cu", "pairs": "gram_pairs.cu", "certify": "fm_greedy.cu", "perturb": "perturb.cu"}
    for module, source in families.items():
        assert (ROOT / "csrc" / source).exists(), source
        assert (PKG / "kernels" / f"{module}.py").exists(), module
    for module, cu in twins.items():
        assert (ROOT / "csrc" / "cuda" / cu).exists(), cu
        assert (PKG / "kernels" / f"{module}_cuda.py").exists(), module
    assert sorted(p.name for p in (ROOT / "csrc" / "cuda").glob("*.cu")) == sorted(twins.values())


# ----------------------------------------------------------------------------- no circles


def import_graph() -> Dict[str, Set[str]]:
    names = set(modules())
    graph: Dict[str, Set[str]] = {n: set() for n in names}
    for imp in all_imports():
        target = imported_module(imp.target)
        if target in names and target != imp.importer:
            graph[imp.importer].add(target)
    return graph


def cycles(graph: Dict[str, Set[str]]) -> List[List[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    on_stack: Set[str] = set()
    out: List[List[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work: List[Tuple[str, Iterator[str]]] = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child: Optional[str] = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    m = stack.pop()
                    on_stack.discard(m)
                    component.append(m)
                    if m == node:
                        break
                if len(component) > 1:
                    out.append(sorted(component))
    return out


def test_no_import_circle():
    found = cycles(import_graph())
    assert not found, "import circles:\n" + "\n".join(" <-> ".join(c) for c in found)


def test_cycle_finder_finds_a_circle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


# ------------------------------------------------------------------------ private names


def owner(target: str) -> Optional[str]:
    """The package a private name belongs to (None when the dotted name has no private part)."""
    parts = target.split(".")
    for i, part in enumerate(parts[1:], start=1):
        if part.startswith("_") and not part.startswith("__"):
            prefix = ".".join(parts[:i])
            return prefix if is_package(prefix) else prefix.rpartition(".")[0]
    return None


def private_crossings() -> List[str]:
    bad = []
    for imp in all_imports():
        pkg = owner(imp.target)
        if pkg is None or pkg == "advrec":  # top-level internals are shared (the core: see above)
            continue
        if not inside(imp.importer, pkg):
            bad.append(f"{imp.importer}:{imp.line} imports {imp.target} (private to {pkg})")
    for name, path in modules().items():  # module._private through an imported module
        aliases = {}
        for imp in imports_of(name, path):
            if is_module(imp.target) and not is_package(imp.target):
                aliases[imp.target.rpartition(".")[2]] = imp.target
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                    and node.value.id in aliases and node.attr.startswith("_")
                    and not node.attr.startswith("__")):
                target = f"{aliases[node.value.id]}.{node.attr}"
                pkg = owner(target)
                if pkg not in (None, "advrec") and not inside(name, pkg):
                    bad.append(f"{name}:{node.lineno} uses {target} (private to {pkg})")
    return bad


def test_no_private_name_crosses_a_package_boundary():
    bad = private_crossings()
    assert not bad, "private names used outside their package:\n" + "\n".join(bad)


@pytest.mark.parametrize("target,expected", [
    ("advrec.data.sampling._draw", "advrec.data"),
    ("advrec.metrics._validate.check_ks", "advrec.metrics"),
    ("advrec.kernels._args.int_array", "advrec.kernels"),
    ("advrec._logging.report", "advrec"),
    ("advrec.data.sampling.BPRSampler", None),
])
def test_owner_of_a_private_name(target, expected):
    assert owner(target) == expected


def test_no_star_imports():
    stars = []
    for name, path in modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and any(a.name == "*" for a in node.names):
                stars.append(f"{name}:{node.lineno}")
    assert not stars, "spell re-exports out:\n" + "\n".join(stars)
