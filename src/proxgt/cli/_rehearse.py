"""``proxgt rehearse``: run every site of a pilot file on this machine (see :mod:`proxgt.rehearsal`)."""

from __future__ import annotations

import argparse
import sys

__all__ = ["register"]


def _handle(args: argparse.Namespace) -> int:
    from proxgt.rehearsal import RehearsalOptions, rehearsal_table, rehearse

    opts = RehearsalOptions(pilot=args.pilot, data=args.data, split=args.split, out=args.out, rates=args.rate,
                            cuts=args.cut, intruder=args.intruder, loopback=args.loopback, timeout=args.timeout,
                            keys=args.keys, capture=args.capture, overwrite=args.overwrite, restarts=args.restart)
    result = rehearse(opts, say=lambda line: print(line, file=sys.stderr))
    for event in result.events:
        print(f"  {event}", file=sys.stderr)
    print(rehearsal_table(result), end="")
    if result.intruder is not None:
        i = result.intruder
        print(f"intruder: {i.get('attempts', 0)} connection attempts, {i.get('accepted', 0)} accepted")
    gap = result.disagreement()
    if gap is not None:
        print(f"final models: the sites' rows are within {gap:.2%} of their mean (largest ||x_i - mean|| / ||mean||)")
    if result.link_trace is not None:
        print(f"link trace: {result.link_trace}")
    if result.replay is not None:
        caveat = " (its link trace only: a site's loss and rejoin are not replayed)" if opts.restarts else ""
        print(f"replay in the simulator{caveat}: proxgt run -c {result.replay}")
    if not result.ok:
        bad = [o for o in result.sites if o.returncode != 0]
        if bad:
            o = bad[0]
            print(f"proxgt: error: site {o.name} exited with {o.returncode}: {o.last_error()} (log: {o.log})",
                  file=sys.stderr)
        else:
            print("proxgt: error: a site kept an intruder's connection open (see intruder.json)", file=sys.stderr)
        return 1
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "rehearse", help="rehearse a cross-site pilot on this machine (one process per site)",
        description="Start every site of PILOT as its own `proxgt site` process with its shard of DATASET, each in "
                    "its own network namespace joined by virtual links when this user may create them (root or "
                    "CAP_NET_ADMIN), else on loopback; shape and cut links, add an intruder; print one table.")
    p.add_argument("pilot", metavar="PILOT.toml", help="the pilot file (sites without public_key get throwaway keys)")
    p.add_argument("--data", required=True, metavar="DATASET",
                   help="data set split over all the pilot's nodes, as `proxgt run --data` reads it")
    p.add_argument("--split", default=None, help="how to split it (default: the pilot's split setting)")
    p.add_argument("--out", default=None, metavar="DIR", help="output folder (default runs/rehearsal/PILOT_NAME)")
    p.add_argument("--overwrite", action="store_true", help="replace a previous rehearsal's folder at --out")
    p.add_argument("--rate", action="append", default=[], metavar="A-B=RATE",
                   help="limit link A-B to RATE each way (tc units: 1mbit, 500kbit); repeatable")
    p.add_argument("--cut", action="append", default=[], metavar="A-B@START:END",
                   help="take link A-B down from START to END seconds after every site started training; repeatable")
    p.add_argument("--restart", action="append", default=[], metavar="SITE@SECONDS",
                   help="kill SITE SECONDS after every site started training, and start it again with --rejoin once "
                        "the others have said they lost it (a site cut off, then back); repeatable for other sites")
    p.add_argument("--intruder", action="store_true",
                   help="add a process with a key not in the pilot that tries to connect to every site")
    p.add_argument("--loopback", action="store_true", help="use loopback proxies even where namespaces are possible")
    p.add_argument("--timeout", type=float, default=900.0, metavar="S",
                   help="stop every site and fail after S seconds (default 900)")
    p.add_argument("--keys", default=None, metavar="DIR",
                   help="secret keys DIR/SITE.key_secret of sites that have a public_key in the pilot")
    p.add_argument("--capture", action="append", default=[], metavar="A-B",
                   help="record every byte crossing link A-B in OUT/capture/A-B/")
    p.set_defaults(handler=_handle)
