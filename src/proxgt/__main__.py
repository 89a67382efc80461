"""Allow `python -m proxgt`."""

from proxgt.cli import main

raise SystemExit(main())
