"""``proxgt compare -c suite.toml``: run a suite's grid (resumable, in parallel) and write its table."""

from __future__ import annotations

import argparse
import sys

__all__ = ["register"]


def _handle(args: argparse.Namespace) -> int:
    from proxgt.reporting.runs import seed_spread_markdown, table_markdown
    from proxgt.suites import load_suite, run_suite, suite_table, suite_table_caption

    suite = load_suite(args.config, out=args.out)
    if args.dry_run:
        pilots = suite.tune.all_pilots() if suite.tune is not None else []
        tuned = {name: list(s.grid) for s in (suite.tune.series if suite.tune is not None else []) for name in s.cells}
        for p in pilots:
            print(f"pilot tune/{p.name}: {p.config}")
        for c in suite.cells:
            note = f" (tuned: {', '.join(tuned[c.name])})" if c.name in tuned else ""
            print(f"{c.name}: {c.config}{note}")
        print(f"{len(suite.cells)} cells" + (f", {len(pilots)} tuning pilots" if pilots else "") + f" -> {suite.out}")
        return 0
    res = run_suite(suite, jobs=args.jobs, progress=sys.stderr.isatty() and not args.no_progress)
    rows = suite_table(suite)
    print(suite_table_caption(suite) + "\n")
    print(table_markdown(rows))
    spread = seed_spread_markdown(rows, suite.metric)
    if spread:
        print(spread)
    reused = f" and took {len(res.reused)} from tuning pilots of the same settings" if res.reused else ""
    print(f"suite {suite.name}: ran {len(res.ran)} cells{reused} ({len(res.diverged)} diverged), skipped "
          f"{len(res.skipped)} already finished, {len(res.failed)} failed; wrote {suite.out}/table.csv and table.md")
    if suite.tune is not None:
        from proxgt.reporting.runs import tuning_markdown
        from proxgt.suites.tuning import read_tuning

        tuning = read_tuning(suite.out)
        if tuning is not None:
            print(tuning_markdown(tuning))
        print(f"tuning: ran {len(res.pilots_ran)} pilots, skipped {len(res.pilots_skipped)} already finished; "
              f"choices in {suite.out}/tune/tuning.json")
    for name, msg in res.failed.items():
        sys.stderr.write(f"proxgt: cell {name} failed: {msg}\n")
    if args.report:
        from proxgt.reporting.report import write_report

        print(f"wrote {write_report(suite.out)}")
    return 1 if res.failed else 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("compare", help="run a suite (grid of runs) from a TOML file; resumable, parallel")
    p.add_argument("-c", "--config", required=True, help="suite TOML file ([suite], [base], [grid], [[cell]], [tune])")
    p.add_argument("--jobs", type=int, default=None, help="parallel processes (default: the suite's jobs, else 1)")
    p.add_argument("--out", default=None, help="output folder (default: the suite's out)")
    p.add_argument("--dry-run", action="store_true", help="list the cells (and tuning pilots) and exit")
    p.add_argument("--report", action="store_true", help="also write report.md and plots (as 'proxgt report')")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(handler=_handle)
