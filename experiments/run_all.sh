#!/bin/sh
# Rerun every shipped suite (resumable: finished cells and tuning pilots are skipped) and regenerate the committed
# reports. Usage: sh experiments/run_all.sh [--jobs N]
# The network suites h2h-lenet and sparsity and the network results table of docs/neural-networks.md (experiments/runs/nn-results) are heavy
# for a small machine: experiments/run_device.sh runs them on a 16-core (+ GPU) machine; their reports are made
# here when their run folders exist.
set -e
cd "$(dirname "$0")/.."
for s in claim-a claim-b-iid claim-b claim-c claim-d claim-d-batch h2h-a9a h2h-mlp; do
    proxgt compare -c "experiments/$s.toml" --no-progress "$@" >/dev/null
    proxgt report "experiments/runs/$s" --out "experiments/reports/$s"
done
# unreliable networks, compressed gossip, differential privacy (docs/unreliable-networks.md, docs/compression.md,
# docs/privacy.md; the *-mlp suites need the Fashion-MNIST IDX files)
for s in robustness robustness-dropout robustness-onepeer compression-a9a compression-mlp dp-mlp; do
    proxgt compare -c "experiments/$s.toml" --no-progress "$@" >/dev/null
    proxgt report "experiments/runs/$s" --out "experiments/reports/$s"
done
# asynchronous vs synchronous on the virtual clock (docs/asynchrony.md; run from the repository root, the clock
# files' paths are relative to it)
for s in async-a9a:a9a async-a9a-outage:a9a-outage async-mlp:mlp; do
    proxgt compare -c "experiments/${s%%:*}.toml" --no-progress "$@" >/dev/null
    proxgt report "experiments/runs/${s%%:*}" --out "experiments/reports/async/${s##*:}"
done
python experiments/async_report.py
# the a9a head-to-head at a looser and a tighter target, from the same runs
proxgt report experiments/runs/h2h-a9a --out experiments/reports/h2h-a9a/target-5e-4 --target 5e-4
proxgt report experiments/runs/h2h-a9a --out experiments/reports/h2h-a9a/target-3e-5 --target 3e-5
if [ -d experiments/runs/h2h-lenet ]; then
    proxgt report experiments/runs/h2h-lenet --out experiments/reports/h2h-lenet
    proxgt report experiments/runs/h2h-lenet --out experiments/reports/h2h-lenet/target-0.3 --target 0.3
fi
if [ -d experiments/runs/sparsity ]; then
    proxgt report experiments/runs/sparsity --out experiments/reports/sparsity
fi
if [ -d experiments/runs/nn-results ]; then
    python experiments/nn_results.py
fi
