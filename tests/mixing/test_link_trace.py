"""Link traces (``link_trace``, ``--link-trace``): a site runtime's recorded late and lost messages, read into the
running-sum mixer's loss pattern; bad files and settings it does not combine with are one-line errors."""

from __future__ import annotations

import numpy as np
import pytest

from proxgt.cli.main import main
from proxgt.errors import ProxGTValueError
from proxgt.mixing.clock import refuse_on_real_time
from proxgt.mixing.link_trace import TraceLoss, read_link_trace
from proxgt.settings import RunConfig

RUN = ["run", "--data", "breast_cancer", "--nodes", "4", "--topology", "ring", "--iters", "3", "--algorithm",
       "proxgt-sa", "--mixing", "plain", "--rounds", "1", "--no-progress"]


def test_a_trace_gives_each_round_its_late_and_lost_messages(tmp_path):
    f = tmp_path / "t.csv"
    f.write_text("round,src,dst,status\n2,1,0,late\n2,0,3,lost\n5,2,3,late\n")
    edges = np.array([[0, 1], [0, 3], [1, 2], [2, 3]])
    loss = TraceLoss(f, edges)
    late, lost = loss.late(2), loss.lost(2)
    assert late.tolist() == [[False] * 4, [True, False, False, False]]  # 1 -> 0 is link (0, 1) backwards
    assert lost.tolist() == [[False, True, False, False], [False] * 4]  # 0 -> 3 is link (0, 3) forwards
    assert loss.late(5)[0, 3] and not loss.lost(5).any() and not loss.late(3).any()


def test_a_folder_reads_every_sites_trace(tmp_path):
    for site, row in (("a", "1,0,1,late\n"), ("b", "0,1,0,lost\n")):
        (tmp_path / site).mkdir()
        (tmp_path / site / "link_trace.csv").write_text("round,src,dst,status\n" + row)
    assert read_link_trace(tmp_path) == [(0, 1, 0, "lost"), (1, 0, 1, "late")]
    (tmp_path / "empty").mkdir()
    with pytest.raises(ProxGTValueError, match="holds no link_trace.csv"):
        read_link_trace(tmp_path / "empty")


@pytest.mark.parametrize("text, message", [
    ("round,src,dst\n1,0,1\n", "expected the header round,src,dst,status"),
    ("round,src,dst,status\n1,0,1,slow\n", "status late or lost"),
    ("round,src,dst,status\nx,0,1,late\n", "line 2: expected ROUND,SRC,DST,STATUS"),
    ("round,src,dst,status\n1,0,1,late\n1,0,1,lost\n", "listed as both late and lost"),
    ("round,src,dst,status\n1,0,2,late\n", "no link between nodes 0 and 2"),
])
def test_bad_traces_are_one_line_errors(tmp_path, capsys, text, message):
    f = tmp_path / "t.csv"
    f.write_text(text)
    assert main(RUN + ["--link-trace", str(f), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err


def test_a_trace_is_refused_where_it_cannot_be_honoured(tmp_path, capsys):
    f = tmp_path / "t.csv"
    f.write_text("round,src,dst,status\n")
    for extra, message in ((["--async"], "--async does not combine with"),
                           (["--message-loss", "0.1"], "link_trace replays a recorded pattern")):
        assert main(RUN + ["--link-trace", str(f), "--out", str(tmp_path / "o")] + extra) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err, err
    with pytest.raises(ProxGTValueError, match="leave it unset with proxgt launch"):
        refuse_on_real_time(RunConfig.from_dict({"link_trace": str(f)}))
