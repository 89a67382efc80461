#!/bin/sh
# Rerun every shipped suite (resumable: finished cells are skipped) and regenerate the committed reports.
# Usage: sh experiments/run_all.sh [--jobs N]
set -e
cd "$(dirname "$0")/.."
for s in claim-a claim-b-iid claim-b claim-c claim-d claim-d-batch h2h-a9a; do
    proxgt compare -c "experiments/$s.toml" --no-progress "$@" >/dev/null
    proxgt report "experiments/runs/$s" --out "experiments/reports/$s"
done
if [ -f experiments/h2h-mlp.toml ]; then
    proxgt compare -c experiments/h2h-mlp.toml --no-progress "$@" >/dev/null
    proxgt report experiments/runs/h2h-mlp --out experiments/reports/h2h-mlp --group-by step
fi
# the head-to-head at a tighter target, from the same runs
proxgt report experiments/runs/h2h-a9a --out experiments/reports/h2h-a9a/target-1e-5 --target 1e-5
