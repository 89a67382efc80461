"""Allow `python -m proxgt.cli`."""

from proxgt.cli.main import main

raise SystemExit(main())
