"""Experiment suites: a grid of runs (algorithms x topologies x node counts x seeds x any other setting),
each cell a normal run folder, run in parallel processes, resumable, summarized in one table.

Suite file (TOML)::

    [suite]
    name = "claim-a"                 # required
    out = "runs/claim-a"             # output folder, relative to the suite file (default: "<name>" there)
    target = 1e-4                    # required: the metric value to reach
    metric = "grad_mapping_sq"       # any metrics column (default grad_mapping_sq)
    jobs = 2                         # parallel processes (default 1; --jobs overrides)
    group_by = "topology"            # optional: one report figure per value of this setting

    [suite.cost]                     # optional cost model (proxgt.costmodel); sample_s measured if absent
    latency_s = 0.01
    bandwidth_Bps = 12.5e6

    [base]                           # settings shared by every cell (any RunConfig field, plus [base.extra])
    data = "a9a-synthetic"
    iters = 400

    [grid]                           # lists crossed into cells, in this order (seed is always varied last)
    algorithm = ["proxgt-sa", "proxgt-sr-o"]
    topology = ["ring", "grid"]
    seed = [0, 1]

    [[cell]]                         # overrides for the cells whose settings match
    match = { algorithm = "proxgt-sr-o" }
    set = { batch = 8 }

    [tune]                           # optional fair tuning (proxgt.suites.tuning): pilots per series, best setting kept
    iters = 80
    [tune.grid]
    "*" = { step = [0.1, 0.3, 1.0] }

Layout of the output folder: ``runs/<cell>/`` (config.toml, metrics.csv, final.npz, summary.json, cell.json),
``suite.json`` (the resolved suite), ``table.csv`` and ``table.md`` (per series, the costs at which the seed-mean
metric gets to the target and stays there, the first dip below it, and the median of the seed mean over the last
20% of the logged points: :func:`proxgt.reporting.runs.series_table`). A cell whose folder holds a finished
summary.json (status ok or diverged) and the same settings in cell.json is not rerun. With a ``[tune]`` table,
pilots run first under ``tune/<pilot>/`` (run folders, resumable the same way), ``tune/tuning.json`` records the
choices, and each tuned cell runs with its series' chosen values (:mod:`proxgt.suites.tuning`).

A cell with a ``central-*`` algorithm and ``nodes = n > 1`` runs on the pooled data: ``nodes = 1``, batch
sizes multiplied by n (SA default 32 -> 32 n), ``extra.pooled_nodes = n`` (reports show total work / n).
"""


from proxgt.suites.cells import Cell, Suite, SuiteResult
from proxgt.suites.runner import cell_is_done, default_jobs, run_suite, run_tuning
from proxgt.suites.spec import load_suite, pooled_config
from proxgt.suites.tables import suite_cost_model, suite_table, suite_table_caption

__all__ = [
    "Cell", "Suite", "SuiteResult", "load_suite", "run_suite", "cell_is_done", "suite_table", "suite_table_caption",
    "pooled_config", "run_tuning", "suite_cost_model", "default_jobs",
]
