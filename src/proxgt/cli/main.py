"""The ``proxgt`` command line and its sub-command table.

Every sub-command lives in its own module exposing ``register(subparsers)``, which adds its parser and sets
``handler`` to a function ``(args) -> int``. Bad input ends with a one-line ``proxgt: error: ...`` on stderr and
exit code 2; a diverged run ends with exit code 3 and keeps the metrics it logged.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import warnings
from collections.abc import Sequence
from typing import NoReturn

from proxgt import __version__
from proxgt.errors import DivergenceError, ProxGTValueError

__all__ = ["main", "COMMAND_MODULES"]

# Sub-command modules, in the order they appear in --help.
COMMAND_MODULES = [
    "proxgt.cli._run",
    "proxgt.cli._demo",
    "proxgt.cli._launch",
    "proxgt.cli._compare",
    "proxgt.cli._report",
    "proxgt.cli._plan",
    "proxgt.cli._site",
    "proxgt.cli._keys",
    "proxgt.cli._rehearse",
]


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (no usage dump) and exit code 2."""

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"proxgt: error: {message} (see '{self.prog} --help')\n")
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="proxgt", description="Decentralized stochastic proximal gradient tracking.")
    parser.add_argument("--version", action="version", version=f"proxgt {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    sys.stderr.write(f"proxgt: warning: {message}\n")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    warnings.showwarning = _show_warning
    try:
        return int(args.handler(args) or 0)
    except ProxGTValueError as exc:
        sys.stderr.write(f"proxgt: error: {exc}\n")
        return 2
    except DivergenceError as exc:
        sys.stderr.write(f"proxgt: error: {exc}\n")
        return 3
    except KeyboardInterrupt:
        sys.stderr.write("proxgt: interrupted\n")
        return 130


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
