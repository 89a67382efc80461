"""``proxgt site``: run one site of a cross-site pilot (:mod:`proxgt.executors.site`)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from proxgt.errors import ProxGTValueError

__all__ = ["register"]


def _peer_addresses(values: list[str] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for v in values or []:
        name, sep, addr = v.partition("=")
        if not sep or not name or not addr.startswith("tcp://"):
            raise ProxGTValueError(f"--peer-address takes NAME=tcp://HOST:PORT (got {v!r})")
        out[name] = addr
    return out


def _handle(args: argparse.Namespace) -> int:
    from proxgt.executors.site.executor import main_line, run_site
    from proxgt.executors.site.transport import SiteLost

    try:
        hist = run_site(args.pilot, args.site, args.key, args.data, out=args.out, site_timeout_s=args.site_timeout,
                        bind=args.bind, peer_addresses=_peer_addresses(args.peer_address),
                        send_delay_s=args.send_delay, asynchronous=args.asynchronous, overwrite=args.overwrite,
                        start_timeout_s=args.start_timeout, rejoin=args.rejoin,
                        progress=sys.stderr.isatty() and not args.no_progress)
    except SiteLost as exc:
        sys.stderr.write(f"proxgt: error: {exc}\n")
        return 1
    print(main_line(hist))
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser("site", help="run one site of a cross-site pilot (mutual TLS links to its neighbours)")
    p.add_argument("pilot", metavar="PILOT.toml", help="the pilot file every site shares")
    p.add_argument("--site", required=True, metavar="NAME", help="this site's name in the pilot file")
    p.add_argument("--key", required=True, metavar="SECRET",
                   help="this site's secret key file (SITE.key_secret from 'proxgt keys new')")
    p.add_argument("--data", required=True, metavar="LOCAL",
                   help="this site's own data file (.npz, LIBSVM, ...); an .npz may carry node_counts")
    p.add_argument("--out", default=None, metavar="DIR", help="this site's run folder (default runs/pilot-NAME/SITE)")
    p.add_argument("--overwrite", action="store_true", help="replace a run already in the output folder")
    p.add_argument("--rejoin", action="store_true",
                   help="this site was lost and the others go on: rejoin them from its checkpoint in --out")
    p.add_argument("--site-timeout", type=float, default=None, metavar="S",
                   help="a neighbour silent this long is lost; the others go on without it (default: the pilot's "
                        "site_timeout_s)")
    p.add_argument("--start-timeout", type=float, default=600.0, metavar="S",
                   help="how long to wait for the neighbours to start (default 600 s, at least the site timeout)")
    p.add_argument("--bind", default=None, metavar="tcp://HOST:PORT",
                   help="listen here instead of the pilot's address (behind NAT or a proxy)")
    p.add_argument("--peer-address", action="append", default=None, metavar="NAME=tcp://HOST:PORT",
                   help="reach neighbour NAME here instead of at the pilot's address (repeatable)")
    p.add_argument("--send-delay", type=float, default=0.0, help=argparse.SUPPRESS)  # delay injection (rehearsals)
    p.add_argument("--async", dest="asynchronous", action="store_true",
                   help="asynchronous mode (not available on the site runtime yet: refused)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(handler=_handle)
