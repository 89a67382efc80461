"""Allow `python -m proxgt.cli`."""

from proxgt.cli import main

raise SystemExit(main())
