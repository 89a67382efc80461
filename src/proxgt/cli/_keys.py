"""``proxgt keys new``: a site's key pair and self-signed TLS certificate for the site runtime
(:mod:`proxgt.executors.site.transport`)."""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["register"]


def _new(args: argparse.Namespace) -> int:
    from proxgt.executors.site.transport import new_site_keys

    public, secret, key = new_site_keys(args.site, args.out)
    print(f"wrote {public} (public) and {secret} (secret, mode 0600: it never leaves this site)")
    print("paste into the pilot file's [[site]] table of this site:")
    print(f'public_key = "{key}"')
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser("keys", help="make a site's key pair for 'proxgt site' (its TLS certificate is the public key "
                       "for the pilot file)")
    keys = p.add_subparsers(dest="keys_command", metavar="ACTION", parser_class=type(p))
    keys.required = True
    new = keys.add_parser("new", help="write SITE.key (public certificate) and SITE.key_secret (secret, "
                          "0600) into --out")
    new.add_argument("--site", required=True, help="the site's name, as in the pilot file")
    new.add_argument("--out", required=True, metavar="DIR", help="folder for the two key files (made if absent)")
    new.set_defaults(handler=_new)
