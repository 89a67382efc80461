"""The README's runnable examples run as written, in order, in a fresh folder (see tests/test_docs.py)."""

from __future__ import annotations

import re
import warnings

from .test_docs import ROOT, isolate_registries, run_blocks, runnable_blocks

README = ROOT / "README.md"


def test_readme_has_runnable_bash_and_python_examples():
    assert {b.lang for b in runnable_blocks(README)} == {"bash", "python"}


def test_readme_examples_run_in_order(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(warnings, "showwarning", warnings.showwarning)  # the CLI replaces it
    isolate_registries(monkeypatch)
    run_blocks(runnable_blocks(README), tmp_path, capsys)
    assert (tmp_path / "runs" / "quick" / "metrics.csv").is_file()
    assert (tmp_path / "runs" / "suite" / "table.csv").is_file()


def test_readme_stays_a_front_page():
    text = README.read_text()
    assert len(text.splitlines()) <= 250
    assert "../" not in text, "the README points outside the repository"


def test_readme_links_lead_to_files_in_the_repository():
    targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", README.read_text())
    local = [t for t in targets if "://" not in t]
    assert local, "the README links no documentation"
    for target in local:
        path = (README.parent / target).resolve()
        assert path.is_relative_to(ROOT) and path.exists(), f"README links {target}, which is not in the repository"
