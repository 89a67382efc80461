"""The architecture's promises: no import cycle among proxgt modules (not even through imports inside
functions), leaf registries, thin package ``__init__`` files, no probing of components with getattr/hasattr in
the run machinery, and a command line whose help imports no heavy library."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "proxgt"


def _module_name(path: Path) -> str:
    rel = path.relative_to(SRC.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _module_level_imports(path: Path) -> set[str]:
    """proxgt modules imported at module level (not inside functions, not under TYPE_CHECKING)."""
    tree = ast.parse(path.read_text())
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()

    def visit(nodes: list[ast.stmt]) -> None:
        for node in nodes:
            if isinstance(node, ast.If):
                test = ast.unparse(node.test)
                if "TYPE_CHECKING" not in test:
                    visit(node.body)
                visit(node.orelse)
            elif isinstance(node, ast.Try):
                visit(node.body)
                for h in node.handlers:
                    visit(h.body)
            elif isinstance(node, ast.Import):
                out.update(a.name for a in node.names if a.name.startswith("proxgt"))
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")
                    base = base[: len(base) - node.level + 1]
                    mod = ".".join(base + ([node.module] if node.module else []))
                else:
                    mod = node.module or ""
                if mod.startswith("proxgt"):
                    out.add(mod)
                    out.update(f"{mod}.{a.name}" for a in node.names)

    visit(tree.body)
    return out


def _all_imports(path: Path) -> set[str]:
    """proxgt modules imported anywhere in the file, inside functions too (TYPE_CHECKING blocks aside): a
    lazy import only postpones a cycle to the first call."""
    tree = ast.parse(path.read_text())
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()

    class Visitor(ast.NodeVisitor):
        def visit_If(self, node: ast.If) -> None:
            if "TYPE_CHECKING" in ast.unparse(node.test):
                for child in node.orelse:
                    self.visit(child)
                return
            self.generic_visit(node)

        def visit_Import(self, node: ast.Import) -> None:
            out.update(a.name for a in node.names if a.name.startswith("proxgt"))

        def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
            if node.level:
                base = package.split(".")
                mod = ".".join(base[: len(base) - node.level + 1] + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if mod.startswith("proxgt"):
                out.add(mod)
                out.update(f"{mod}.{a.name}" for a in node.names)

    Visitor().visit(tree)
    return out


def _ancestors(name: str) -> set[str]:
    parts = name.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts))}


def _graph(imports=_module_level_imports) -> dict[str, set[str]]:
    """Module -> the proxgt modules its imports run (``imports``: module level only, or all). Importing a.b.c
    runs a/__init__, a/b/__init__ and a/b/c; a package that contains the importer is already being
    initialized, so it is not an edge."""
    files = {_module_name(p): p for p in SRC.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        deps = set()
        own = _ancestors(name) | ({name} if path.name == "__init__.py" else set())
        for imp in imports(path):
            parts = imp.split(".")
            for i in range(1, len(parts) + 1):
                cand = ".".join(parts[:i])
                if cand in files and cand != name and cand not in own:
                    deps.add(cand)
        graph[name] = deps
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A list of modules forming a cycle, or None (depth-first search with colours)."""
    colour: dict[str, int] = {}
    stack: list[str] = []

    def dfs(u: str) -> list[str] | None:
        colour[u] = 1
        stack.append(u)
        for v in sorted(graph.get(u, ())):
            if colour.get(v) == 1:
                return stack[stack.index(v):] + [v]
            if colour.get(v) is None:
                found = dfs(v)
                if found:
                    return found
        stack.pop()
        colour[u] = 2
        return None

    for node in sorted(graph):
        if colour.get(node) is None:
            found = dfs(node)
            if found:
                return found
    return None


def test_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle_among_proxgt_modules():
    cycle = find_cycle(_graph())
    assert cycle is None, " -> ".join(cycle)


def test_no_import_cycle_counting_imports_inside_functions():
    cycle = find_cycle(_graph(_all_imports))
    assert cycle is None, " -> ".join(cycle)


def test_the_lazy_import_finder_sees_imports_inside_functions():
    launch_cli = SRC / "cli" / "_launch.py"  # imports the launcher inside its handler, to keep --help light
    assert "proxgt.executors.launch.launcher" in _all_imports(launch_cli)
    assert "proxgt.executors.launch.launcher" not in _module_level_imports(launch_cli)


#: The run machinery reads declared capabilities; these folders may not probe components with getattr/hasattr.
NO_PROBING = ("training", "mixing", "executors", "privacy")


def _probes(tree: ast.AST) -> list[ast.Call]:
    """``hasattr(x, ...)`` and ``getattr(x, ..., default)``: asking an object whether it has something. (A
    two-argument getattr reads a field known to exist by its name, e.g. a setting, and is not probing.)"""
    return [node for node in ast.walk(tree) if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
            and (node.func.id == "hasattr" or (node.func.id == "getattr" and len(node.args) == 3))]


def test_the_probe_finder_finds_probes():
    tree = ast.parse("a = getattr(x, 'y', None)\nb = hasattr(x, 'y')\nc = getattr(cfg, name)\n")
    assert [n.lineno for n in _probes(tree)] == [1, 2]


#: data-format probing, not capabilities: (file, attribute) pairs allowed, each with its reason
FORMAT_PROBES = {
    ("executors/checkpoint.py", "_fields"),  # is a state a NamedTuple (fields by position) or a dataclass?
}


def test_no_getattr_probing_in_the_run_machinery():
    offenders = []
    for folder in NO_PROBING:
        for path in (SRC / folder).rglob("*.py"):
            for node in _probes(ast.parse(path.read_text())):
                attr = node.args[1].value if isinstance(node.args[1], ast.Constant) else None
                if (str(path.relative_to(SRC)), attr) in FORMAT_PROBES:
                    continue
                offenders.append(f"{path.relative_to(SRC)}:{node.lineno} {ast.unparse(node)[:80]}")
    assert not offenders, offenders


def test_modules_import_siblings_directly():
    """A module importing a name from its own package's __init__ would see it half-initialized."""
    offenders = []
    for path in SRC.rglob("*.py"):
        if path.name == "__init__.py":
            continue
        name = _module_name(path)
        for imp in _module_level_imports(path):
            if imp in _ancestors(name) and imp != "proxgt":
                offenders.append(f"{name} imports {imp}")
    assert not offenders, offenders


@pytest.mark.parametrize("leaf", ["proxgt.registry", "proxgt.errors", "proxgt.settings.table"])
def test_leaf_modules_import_only_leaves(leaf):
    allowed = {"proxgt.errors", "proxgt.settings.constraints"}
    deps = _graph()[leaf]
    assert deps <= allowed, deps - allowed


def test_init_files_only_reexport():
    offenders = []
    for path in SRC.rglob("__init__.py"):
        tree = ast.parse(path.read_text())
        for node in tree.body:
            ok = isinstance(node, ast.Import | ast.ImportFrom) or (
                isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant))  # docstring
            ok = ok or (isinstance(node, ast.Assign) and [ast.unparse(t) for t in node.targets] in (["__all__"],
                                                                                                ["__version__"]))
            # the top package also has the run() entry point and a lazy attribute hook
            ok = ok or (path.parent == SRC and isinstance(node, ast.FunctionDef | ast.If))
            if not ok:
                offenders.append(f"{path.relative_to(SRC)}:{node.lineno}")
    assert not offenders, offenders


HEAVY = ("torch", "matplotlib", "networkx", "scipy", "numpy")


@pytest.mark.parametrize("argv", [["--help"], ["run", "--help"], ["launch", "--help"], ["plan", "--help"],
                                  ["demo", "--help"], ["compare", "--help"], ["report", "--help"]])
def test_help_imports_no_heavy_library(argv):
    code = (
        "import sys\n"
        "from proxgt.cli import main\n"
        "try:\n"
        f"    main({argv!r})\n"
        "except SystemExit:\n"
        "    pass\n"
        f"heavy = [m for m in {HEAVY!r} if m in sys.modules]\n"
        "print('HEAVY', heavy)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "HEAVY []" in proc.stdout, proc.stdout[-500:] + proc.stderr[-2000:]
    assert "usage:" in proc.stdout


def test_run_help_shows_sections_choices_and_defaults():
    proc = subprocess.run([sys.executable, "-m", "proxgt.cli", "run", "--help"], capture_output=True, text=True,
                          timeout=60)
    out = proc.stdout
    for text in ("[graph] settings", "[algorithm] settings", "proxgt-sr-e", "prox-dsgt", "[default: 16]",
                 "--weights-file", "--epochs", "--reg-radius", "--box-lower", "--group-size", "--groups", "--init"):
        assert text in out, text
