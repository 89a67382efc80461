"""The documentation's runnable examples run as a reader meets them, and the docs refer only to what ships.

A fenced code block preceded by the line ``<!-- runnable -->`` is executed: the pages in the order of the site's
navigation (``mkdocs.yml``), the blocks of a page in order, in one fresh working folder per page that holds a
link to the repository's ``examples/``. Bash blocks run line by line (continuation lines joined); a
``proxgt ...`` line runs the command line in this process, any other line runs in bash with ``proxgt`` on the
PATH. Python blocks share one namespace per page. ``<!-- runnable requires pandas -->`` marks a block that needs
an optional module: its page runs where the module is installed (CI installs the extras) and is skipped
elsewhere. Examples keep their budgets small (few iterations) so that this stays fast, and every command that
writes a run folder names its own ``--out``.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import textwrap
import types
import warnings
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
MKDOCS = ROOT / "mkdocs.yml"
MARKER = "<!-- runnable -->"
_MARKER = r"<!-- runnable(?: requires (?P<requires>[\w., ]+?))? -->[ \t]*"
_MARKER_LINE = re.compile(rf"^[ \t]*{_MARKER}$", re.M)
_BLOCK = re.compile(
    rf"^(?P<indent>[ \t]*){_MARKER}\n(?P=indent)```(?P<lang>\w+)[^\n]*\n(?P<body>.*?)^(?P=indent)```", re.M | re.S
)
# sub-commands that write a run folder: each runnable use names its own --out (or resumes one)
_WRITERS = {"run", "demo", "launch", "compare"}
_SHELL_SYNTAX = re.compile(r"[|&;<>$`()]")


@dataclass(frozen=True)
class Block:
    page: str
    index: int
    lang: str
    body: str
    requires: tuple[str, ...] = ()  # optional modules the block needs


def runnable_blocks(path: Path) -> list[Block]:
    text = path.read_text()
    blocks = [
        Block(path.name, i, m.group("lang"), textwrap.dedent(m.group("body")),
              tuple(r.strip() for r in (m.group("requires") or "").split(",") if r.strip()))
        for i, m in enumerate(_BLOCK.finditer(text))
    ]
    # a marker that is not directly followed by a fence would silently skip its block
    markers = len(_MARKER_LINE.findall(text))
    assert markers == len(blocks), f"{path.name}: a {MARKER} marker is not followed by a code block"
    return blocks


def nav_pages() -> list[Path]:
    """The site's pages in navigation order (the order a reader meets them)."""
    nav = MKDOCS.read_text().split("\nnav:\n", 1)[1]
    nav = re.split(r"\n\S", nav, maxsplit=1)[0]  # up to the next top-level key
    return [DOCS / name for name in re.findall(r"([\w./-]+\.md)\b", nav)]


def commands(body: str) -> list[str]:
    """One string per command: continuation lines joined, blank lines and comment lines dropped."""
    out, current = [], ""
    for line in body.splitlines():
        current += line
        if current.endswith("\\"):
            current = current[:-1] + " "
            continue
        if current.strip() and not current.lstrip().startswith("#"):
            out.append(current.strip())
        current = ""
    assert not current, "a command ends with a line continuation"
    return out


def _proxgt_argv(command: str) -> list[str] | None:
    """The arguments of a plain ``proxgt ...`` command line (run in this process), else None."""
    argv = shlex.split(command, comments=True)
    if argv and argv[0] == "proxgt" and not _SHELL_SYNTAX.search(command.split("#", 1)[0]):
        return argv[1:]
    return None


def check_block(block: Block) -> None:
    """What a runnable example must be: complete (no ``...``), writing only into folders it names, under runs/."""
    where = f"{block.page} block {block.index}"
    assert "..." not in block.body, f"{where}: a runnable example contains '...'"
    if block.lang != "bash":
        return
    for command in commands(block.body):
        argv = shlex.split(command, comments=True)
        if argv[:1] == ["proxgt"] and len(argv) > 1 and argv[1] in _WRITERS:
            writes = not {"--help", "-h", "--dry-run"} & set(argv)
            assert not writes or {"--out", "--resume"} & set(argv), f"{where}: '{command}' writes to a default folder"
        for flag, value in zip(argv, argv[1:], strict=False):
            # a reader runs the examples in the repository's root, where runs/ is ignored by git
            if argv[:1] == ["proxgt"] and flag in {"--out", "--tensorboard"}:
                assert value.startswith("runs/"), f"{where}: '{command}' writes outside runs/"


def _shim(folder: Path) -> Path:
    """A ``proxgt`` executable for bash lines, running this checkout's sources."""
    bin_dir = folder / ".bin"
    bin_dir.mkdir()
    exe = bin_dir / "proxgt"
    exe.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m proxgt.cli "$@"\n')
    exe.chmod(0o755)
    return bin_dir


def isolate_registries(monkeypatch) -> None:
    """Give every registry a private copy of its tables for one test: an example that registers a method of its
    own (the extending guide does) must not change the names other tests see."""
    import proxgt.registry

    for registry in vars(proxgt.registry).values():
        if isinstance(registry, proxgt.registry.Registry):
            for attr, table in list(vars(registry).items()):
                if isinstance(table, dict):
                    monkeypatch.setattr(registry, attr, dict(table))


def run_blocks(blocks: list[Block], workdir: Path, capsys) -> None:
    """Run ``blocks`` in order with ``workdir`` as the working folder (the caller has chdir'ed there and
    isolated the registries)."""
    (workdir / "examples").symlink_to(ROOT / "examples")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]),
               OMP_NUM_THREADS="1")
    env["PATH"] = f"{_shim(workdir)}{os.pathsep}{env.get('PATH', '')}"
    # Python blocks run as the body of one module, as a reader's script would: registered in sys.modules (a
    # dataclass looks its module up) and compiled without this file's __future__ imports.
    module = types.ModuleType("docs_example")
    sys.modules[module.__name__] = module
    try:
        _run_in_order(blocks, workdir, env, module, capsys)
    finally:
        del sys.modules[module.__name__]


def _run_in_order(blocks: list[Block], workdir: Path, env: dict[str, str], module: types.ModuleType, capsys) -> None:
    from proxgt.cli.main import main

    for block in blocks:
        check_block(block)
        where = f"{block.page} block {block.index}"
        if block.lang == "python":
            exec(compile(block.body, where, "exec", dont_inherit=True), module.__dict__)  # noqa: S102
            continue
        assert block.lang == "bash", f"{where}: runnable blocks are bash or python, not {block.lang}"
        for command in commands(block.body):
            argv = _proxgt_argv(command)
            if argv is not None:
                try:
                    with warnings.catch_warnings():
                        code = main(argv)
                except SystemExit as exc:  # --help and --version end through argparse
                    code = exc.code or 0
                captured = capsys.readouterr()
                assert code == 0, f"{where}: '{command}' exited with {code}: {captured.err.strip()[-500:]}"
            else:
                done = subprocess.run(["bash", "-ec", command], cwd=workdir, env=env, capture_output=True,
                                      text=True, timeout=300)
                assert done.returncode == 0, f"{where}: '{command}' failed: {done.stderr.strip()[-500:]}"


PAGES = nav_pages()


def test_navigation_lists_every_page_once():
    names = [p.relative_to(DOCS).as_posix() for p in PAGES]
    assert len(names) == len(set(names)), "a page appears twice in mkdocs.yml's nav"
    on_disk = sorted(p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md"))
    assert sorted(names) == on_disk, "mkdocs.yml's nav and the Markdown files under docs/ differ"


def test_every_example_file_the_docs_name_ships():
    named = set()
    for page in [ROOT / "README.md", ROOT / "experiments" / "README.md", *PAGES]:
        named |= set(re.findall(r"\bexamples/[\w./-]*\w", page.read_text()))
    assert named, "the docs name no example files"
    missing = sorted(n for n in named if not (ROOT / n).exists())
    assert not missing, f"the docs name example files that do not ship: {missing}"


@pytest.mark.parametrize("page", [p.relative_to(DOCS).as_posix() for p in PAGES])
def test_runnable_examples_of_a_page_run_in_order(page, tmp_path, monkeypatch, capsys):
    blocks = runnable_blocks(DOCS / page)
    if not blocks:
        pytest.skip(f"{page} has no runnable examples")
    for module in sorted({m for b in blocks for m in b.requires}):
        pytest.importorskip(module, reason=f"{page}'s examples need {module} (an optional extra)")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(warnings, "showwarning", warnings.showwarning)  # the CLI replaces it
    isolate_registries(monkeypatch)
    run_blocks(blocks, tmp_path, capsys)


def test_registrations_of_an_example_stay_inside_its_test(monkeypatch):
    from proxgt.registry import ALGORITHMS

    with monkeypatch.context() as patch:
        isolate_registries(patch)
        ALGORITHMS.register("docs-example-method", "builtins:len", replace=True)
        assert "docs-example-method" in ALGORITHMS
    assert "docs-example-method" not in ALGORITHMS


def test_a_runnable_example_is_checked(tmp_path):
    """The checks catch what broke following the docs before: '...', a default output folder, a stray marker."""
    with pytest.raises(AssertionError, match=r"contains '\.\.\.'"):
        check_block(Block("p.md", 0, "bash", "proxgt run --data my.npz ...\n"))
    with pytest.raises(AssertionError, match="default folder"):
        check_block(Block("p.md", 0, "bash", "proxgt run --iters 5 \\\n  --nodes 2\n"))
    check_block(Block("p.md", 0, "bash", "proxgt run --iters 5 \\\n  --out runs/a   # comment\n"))
    with pytest.raises(AssertionError, match="outside runs/"):
        check_block(Block("p.md", 0, "bash", "proxgt compare -c examples/suite.toml --out results/s\n"))
    page = tmp_path / "p.md"
    page.write_text(f"{MARKER}\n\nsome text\n```bash\nproxgt --help\n```\n")
    with pytest.raises(AssertionError, match="not followed by a code block"):
        runnable_blocks(page)
    page.write_text(f"- item\n\n    {MARKER}\n    ```bash\n    proxgt --version\n    ```\n")
    assert [b.body for b in runnable_blocks(page)] == ["proxgt --version\n"]
    page.write_text("<!-- runnable requires pandas, scipy.sparse -->\n```python\nimport pandas\n```\n")
    assert [b.requires for b in runnable_blocks(page)] == [("pandas", "scipy.sparse")]
