"""A stand-in for `proxgt site` (its command line, its files) for tests of the rehearsal's own paths: a site
that fails at once (--fail NAME), or one that trains for --seconds and writes what a site writes; --say-lost NAME
prints a survivor's notice that site NAME was lost after --lost-after seconds (--late-site: 1.5 s later), and
--rejoin marks the folder."""

import argparse
import json
import sys
import time
from pathlib import Path


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("pilot")
    p.add_argument("--site")
    p.add_argument("--key")
    p.add_argument("--data")
    p.add_argument("--out")
    p.add_argument("--peer-address", action="append", default=[])
    p.add_argument("--fail", default=None, help="this site fails at once")
    p.add_argument("--seconds", type=float, default=1.0)
    p.add_argument("--say-lost", default=None)
    p.add_argument("--lost-after", type=float, default=0.5)
    p.add_argument("--late-site", default=None, help="this site says it 1.5 s later than the others")
    p.add_argument("--rejoin", action="store_true")
    a = p.parse_args()
    if a.fail == a.site:
        print("proxgt: error: stub site failed on purpose", file=sys.stderr)
        return 2
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.csv").write_text("iter,objective\n0,1.0\n")  # a site logs iteration 0 as it starts training
    if a.rejoin:
        (out / "rejoined").write_text(f"{time.time()}\n")
    if a.say_lost not in (None, a.site):
        time.sleep(a.lost_after + (1.5 if a.site == a.late_site else 0.0))
        (out / "said-lost").write_text(f"{time.time()}\n")  # before it says so: nothing can react earlier
        print(f"proxgt: warning: site {a.site}: site {a.say_lost} was lost (silent for more than 1 s); from "
              "iteration 7 the run goes on", file=sys.stderr, flush=True)
    time.sleep(a.seconds)
    (out / "summary.json").write_text(json.dumps({"status": "ok", "final": {"objective": 1.0}, "site": {
        "iterations": 1, "bytes_sent": 0, "seconds_waiting": 0.0, "messages_late": 0, "messages_lost": 0,
        "refused_connections": 0}}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
