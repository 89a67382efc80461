"""A stand-in for `proxgt site` (its command line, its files) for tests of the rehearsal's own paths: a site
that fails at once (--fail NAME), or one that trains for --seconds and writes what a site writes."""

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
    a = p.parse_args()
    if a.fail == a.site:
        print("proxgt: error: stub site failed on purpose", file=sys.stderr)
        return 2
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.csv").write_text("iter,objective\n0,1.0\n")  # a site logs iteration 0 as it starts training
    time.sleep(a.seconds)
    (out / "summary.json").write_text(json.dumps({"status": "ok", "final": {"objective": 1.0}, "site": {
        "iterations": 1, "bytes_sent": 0, "seconds_waiting": 0.0, "messages_late": 0, "messages_lost": 0,
        "refused_connections": 0}}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
