"""Run folders: locked while in use, never overwritten by accident, portable config.toml, readable files."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib

import pytest

import proxgt
from proxgt.cli import main
from proxgt.errors import ProxGTValueError
from proxgt.training import RunFolder

FAST = ["--data", "breast_cancer", "--nodes", "4", "--iters", "10", "--log-every", "5", "--no-progress"]


def _cli(argv, capsys):
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_a_folder_in_use_is_refused(tmp_path):
    with RunFolder(tmp_path / "r"):
        with pytest.raises(ProxGTValueError, match="is in use by another run"):
            RunFolder(tmp_path / "r")
    RunFolder(tmp_path / "r").close()  # released with the first run


def test_a_folder_in_use_by_another_process_is_refused_by_the_cli(tmp_path):
    out = tmp_path / "r"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom proxgt.training import RunFolder\n"
         f"f = RunFolder({str(out)!r})\nprint('locked', flush=True)\ntime.sleep(60)"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        proc = subprocess.run([sys.executable, "-m", "proxgt.cli", "run", *FAST, "--out", str(out)],
                              capture_output=True, text=True, timeout=120)
    finally:
        holder.kill()
        holder.wait()
    assert proc.returncode == 2
    assert proc.stderr.startswith("proxgt: error: output folder") and "in use by another run" in proc.stderr
    assert proc.stderr.count("\n") == 1


def test_a_finished_run_is_not_overwritten_without_overwrite(tmp_path, capsys):
    out = tmp_path / "r"
    assert _cli(["run", *FAST, "--out", str(out)], capsys)[0] == 0
    before = (out / "metrics.csv").read_text()
    code, _, err = _cli(["run", *FAST, "--seed", "1", "--out", str(out)], capsys)
    assert code == 2 and "already holds a finished run" in err and "--overwrite" in err
    assert (out / "metrics.csv").read_text() == before  # nothing the user had was touched
    assert _cli(["run", *FAST, "--seed", "1", "--out", str(out), "--overwrite"], capsys)[0] == 0
    assert (out / "metrics.csv").read_text() != before


def test_overwrite_removes_a_stale_checkpoint(tmp_path, capsys):
    out = tmp_path / "r"
    assert _cli(["run", *FAST, "--iters", "20", "--checkpoint-every", "10", "--out", str(out)], capsys)[0] == 0
    assert (out / "checkpoint").is_dir()
    assert _cli(["run", *FAST, "--seed", "3", "--out", str(out), "--overwrite"], capsys)[0] == 0
    assert not (out / "checkpoint").exists()  # the new run could never resume from the old run's state
    code, _, err = _cli(["run", "--resume", str(out), "--iters", "30"], capsys)
    assert code == 2 and "without a usable checkpoint to extend (no complete checkpoint" in err, err


def test_python_api_refuses_a_used_folder_too(tmp_path):
    cfg = {"data": "breast_cancer", "nodes": 2, "iters": 5, "log_every": 5}
    proxgt.run(cfg, out=tmp_path / "r")
    with pytest.raises(ProxGTValueError, match="already holds a finished run"):
        proxgt.run(cfg, out=tmp_path / "r")
    proxgt.run(cfg, out=tmp_path / "r", overwrite=True)


@pytest.mark.parametrize("where", ["file", "proc", "devnull"])
def test_bad_output_paths_are_one_line_errors(tmp_path, capsys, where):
    (tmp_path / "plain").write_text("x")
    target = {"file": str(tmp_path / "plain" / "sub"), "proc": "/proc/proxgt-nope/sub",
              "devnull": "/dev/null/sub"}[where]
    code, _, err = _cli(["run", *FAST, "--out", target], capsys)
    assert code == 2 and err.startswith("proxgt: error: cannot create output folder") and err.count("\n") == 1


def test_files_are_world_readable_under_a_022_umask(tmp_path, capsys):
    old = os.umask(0o022)
    try:
        assert _cli(["run", *FAST, "--iters", "10", "--checkpoint-every", "10", "--out", str(tmp_path / "r")],
                    capsys)[0] == 0
    finally:
        os.umask(old)
    files = [p for p in (tmp_path / "r").rglob("*") if p.is_file() and p.name != ".lock"]
    assert {p.name for p in files} >= {"config.toml", "metrics.csv", "final.npz", "summary.json", "rank0.pt"}
    for p in files:
        assert p.stat().st_mode & 0o777 == 0o644, (p, oct(p.stat().st_mode))


def test_config_toml_reproduces_the_run_from_another_folder(tmp_path, capsys, monkeypatch):
    data = tmp_path / "d.svm"
    data.write_text("".join(f"{1 if i % 3 else -1} 1:{i / 50:.3f} 2:{(i * 7 % 11) / 11:.3f}\n" for i in range(60)))
    edges = tmp_path / "edges.txt"
    edges.write_text("0 1\n1 2\n2 3\n3 0\n")
    monkeypatch.chdir(tmp_path)
    args = ["--data", "d.svm", "--topology", "file", "--edge-file", "edges.txt", "--nodes", "4", "--iters", "10",
            "--log-every", "5", "--no-progress"]
    assert _cli(["run", *args, "--out", "first"], capsys)[0] == 0
    recorded = tomllib.loads((tmp_path / "first" / "config.toml").read_text())
    assert recorded["data"]["data"] == str(data) and recorded["graph"]["edge_file"] == str(edges)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert _cli(["run", "-c", str(tmp_path / "first" / "config.toml"), "--out", "again", "--no-progress"],
                capsys)[0] == 0
    a = (tmp_path / "first" / "metrics.csv").read_text().splitlines()
    b = (elsewhere / "again" / "metrics.csv").read_text().splitlines()

    def no_wall(lines):
        col = lines[0].split(",").index("wall_s")
        return [",".join(v for i, v in enumerate(line.split(",")) if i != col) for line in lines]

    assert no_wall(a) == no_wall(b)


def test_resume_says_where_it_continues(tmp_path, capsys):
    out = tmp_path / "r"
    assert _cli(["run", *FAST, "--iters", "20", "--checkpoint-every", "10", "--out", str(out)], capsys)[0] == 0
    (out / "summary.json").unlink()  # as if killed after the checkpoint of iteration 20
    code, _, err = _cli(["run", "--resume", str(out), "--no-progress"], capsys)
    assert code == 0 and f"proxgt: resuming {out} at iteration 20 of 20" in err
