"""The ``proxgt`` command line: a thin layer that fills a :class:`~proxgt.settings.RunConfig`, calls the
library and writes files (entry point :func:`proxgt.cli.main.main`). Nothing here imports torch until a
command starts work, so ``proxgt --help`` is fast."""

from proxgt.cli.main import COMMAND_MODULES, main

__all__ = ["main", "COMMAND_MODULES"]
