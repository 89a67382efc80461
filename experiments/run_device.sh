#!/bin/sh
# The heavy network experiments, in one go, on a lent machine with 16 CPU cores and one NVIDIA GPU (no internet,
# no pip): the LeNet-5 head-to-head (h2h-lenet), the sparsity sweep (sparsity: MLP 784-256-10 and LeNet-5) and the
# network results table of docs/neural-networks.md (nn-results: 7 single runs). MLP runs use the CPU cores (one thread each);
# LeNet-5 runs use DEVICE (default cpu: on 2026-11-26 LeNet-5 on cuda failed in proxgt.problems.nn._grouped_logits,
# "Input type (torch.FloatTensor) and weight type (torch.cuda.FloatTensor)": a suite without sample_s measured it
# with an oracle left on the CPU beside cuda iterates, fixed in proxgt.costmodel.measure_sample_time; with
# DEVICE=cuda a 2-cell precheck falls back to the CPU if a cuda cell fails). The parts (PARTS, default all three) run side by side, JOBS (default 12)
# cells at a time per suite, each stopped after BUDGET_S seconds (default 450; unfinished cells are missing from
# the reports, and a rerun resumes them: finished pilots and cells are skipped).
# Measured on the H100 machine (16 cores), all on the CPU: nn-results and the MLP half of sparsity in 380 s beside
# the LeNet pilots; then the LeNet half of sparsity and the 12 h2h-lenet cells in 300 s (PARTS="h2h-lenet sparsity").
#
#   sh experiments/run_device.sh              # on the device machine, from the repository root
#   SMOKE=1 sh experiments/run_device.sh     # tiny iteration counts into experiments/runs/smoke/: a check
#
# Needs, in the working tree (ignored by git, carried to the machine): experiments/data/fashion-mnist/ with the
# 4 Fashion-MNIST IDX .gz files (copied from the Debian package dataset-fashion-mnist) and
# experiments/data/tomli_w-1.2.0-py3-none-any.whl (imported from the wheel where tomli_w is not installed).
# Writes experiments/runs/{h2h-lenet,sparsity,nn-results}/ and, where $OUT is set, $OUT/device-runs.tar.gz: those
# folders without final.npz (too large to bring back; the per-run density/accuracy measurements the reports
# need are computed here into each run's sparsity.json). Afterwards, on the development machine:
#   tar xzf <files_at>/device-runs.tar.gz       # from the repository root
#   proxgt report experiments/runs/h2h-lenet --out experiments/reports/h2h-lenet
#   proxgt report experiments/runs/sparsity --out experiments/reports/sparsity
#   python experiments/nn_results.py            # -> experiments/reports/nn-results/table.md
set -u
cd "$(dirname "$0")/.."
ROOT=$PWD
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1 PROXGT_FASHION_MNIST="$ROOT/experiments/data/fashion-mnist"
export PYTHONPATH="$ROOT/src${PYTHONPATH:+:$PYTHONPATH}"
if ! $PY -c "import tomli_w" 2>/dev/null; then
    export PYTHONPATH="$PYTHONPATH:$(ls "$ROOT"/experiments/data/tomli_w-*.whl | head -n 1)"
fi
DEVICE=${DEVICE:-cpu}
BUDGET_S=${BUDGET_S:-450}
SMOKE=${SMOKE:-0}
RUNS=experiments/runs
[ "$SMOKE" = 1 ] && RUNS=experiments/runs/smoke
mkdir -p "$RUNS/.suites"
for f in experiments/data/fashion-mnist/train-images-idx3-ubyte.gz experiments/data/fashion-mnist/t10k-labels-idx1-ubyte.gz; do
    [ -f "$f" ] || { echo "run_device.sh: missing $f (copy the IDX files of dataset-fashion-mnist there)"; exit 2; }
done
$PY -c "import torch, sys; sys.exit(0 if '$DEVICE' == 'cpu' or torch.cuda.is_available() else 1)" \
    || { echo "run_device.sh: DEVICE=$DEVICE but torch sees no GPU"; exit 2; }
echo "run_device.sh: device=$DEVICE budget=${BUDGET_S}s smoke=$SMOKE runs under $RUNS; $(nproc) cores"

# device variants of the shipped suites: device set in [base]; SMOKE cuts every iteration count
variant() {  # variant NAME -> path of the variant suite file
    $PY - "$1" "$DEVICE" "$SMOKE" "$RUNS/.suites/$1.toml" <<'PYEOF'
import sys, tomllib, tomli_w
name, device, smoke, dest = sys.argv[1:]
with open(f"experiments/{name}.toml", "rb") as f:
    suite = tomllib.load(f)
# LeNet-5 cells on the GPU; MLP cells on the CPU cores (one thread each), where they run about as fast
suite["base"]["device"] = device if suite["base"].get("problem") == "lenet" else "cpu"
if "problem" in suite.get("grid", {}):
    suite.setdefault("cell", []).append({"match": {"problem": "lenet"}, "set": {"device": device}})
if smoke == "1":
    suite["base"]["iters"], suite["base"]["log_every"] = 12, 6
    if "tune" in suite:
        suite["tune"]["iters"] = 6
with open(dest, "w") as f:
    f.write(tomli_w.dumps(suite))
print(dest)
PYEOF
}

# CUDA in the suites' forked worker processes: the parent must not initialize CUDA before it forks
export PYTORCH_NVML_BASED_CUDA_CHECK=1
if [ "$DEVICE" != cpu ]; then  # a 2-cell suite through the same fork path; fall back to the CPU if it fails
    cat >"$RUNS/.suites/precheck.toml" <<TOMLEOF
[suite]
name = "precheck"
target = 1.0
[base]
problem = "lenet"
data = "fashion-mnist"
split = "pairs"
nodes = 5
iters = 3
log_every = 3
metrics_samples = 50
device = "$DEVICE"
[grid]
algorithm = ["proxgt-sa", "dproxsgt"]
TOMLEOF
    if timeout 120 $PY -m proxgt.cli compare -c "$RUNS/.suites/precheck.toml" --out "$RUNS/.precheck" --jobs 2 \
            --no-progress >"$RUNS/precheck.log" 2>&1; then
        echo "run_device.sh: precheck on $DEVICE ok"
    else
        echo "run_device.sh: precheck on $DEVICE FAILED, running everything on the CPU:"; tail -n 25 "$RUNS/precheck.log"
        DEVICE=cpu
    fi
fi

START=$(date +%s)
PIDS=""
PARTS=${PARTS:-"h2h-lenet sparsity nn-results"}
for s in h2h-lenet sparsity; do
    case " $PARTS " in *" $s "*) ;; *) continue ;; esac
    v=$(variant $s) || exit 1
    jobs=${JOBS:-12}
    timeout -k 10 "$BUDGET_S" $PY -m proxgt.cli compare -c "$v" --out "$RUNS/$s" --jobs $jobs --no-progress \
        >"$RUNS/$s.log" 2>&1 &
    PIDS="$PIDS $!"
done

# the network results of docs/neural-networks.md: 8 nodes, ring, shards, l1 1e-4, 10 passes per node, seed 0
NN="--data fashion-mnist --split shards --nodes 8 --topology ring --reg l1 --reg-strength 1e-4 --seed 0 --threads 1 --metrics-samples 2000 --overwrite"
mkdir -p "$RUNS/nn-results"
nnrun() {  # nnrun NAME ITERS LOG_EVERY ARGS...
    name=$1; iters=$2; every=$3; shift 3
    if [ "$SMOKE" = 1 ]; then iters=12; every=6; fi
    timeout -k 10 "$BUDGET_S" $PY -m proxgt.cli run $NN --iters "$iters" --log-every "$every" "$@" \
        --out "$RUNS/nn-results/$name" >"$RUNS/nn-results/$name.log" 2>&1 &
    PIDS="$PIDS $!"
}
case " $PARTS " in *" nn-results "*) ;; *) nnrun() { :; } ;; esac
nnrun mlp-sa-b32 2340 234 --device cpu --problem mlp --algorithm proxgt-sa --batch 32 --step 0.1
nnrun mlp-sa-b128 584 73 --device cpu --problem mlp --algorithm proxgt-sa --batch 128 --rounds 2 --step 0.2
nnrun mlp-sro 1555 311 --device cpu --problem mlp --algorithm proxgt-sr-o --batch 16 --big-batch 256 --period 16 --step 0.02
nnrun mlp-sa-mixprox 2340 234 --device cpu --problem mlp --algorithm proxgt-sa --batch 32 --step 0.1 --order mix-prox
nnrun lenet-sa 2340 234 --device "$DEVICE" --problem lenet --algorithm proxgt-sa --batch 32 --step 0.1
nnrun lenet-sa-step0.3 2340 234 --device "$DEVICE" --problem lenet --algorithm proxgt-sa --batch 32 --step 0.3
nnrun lenet-sro 1555 311 --device "$DEVICE" --problem lenet --algorithm proxgt-sr-o --batch 16 --big-batch 256 --period 16 --step 0.01

count() { ls "$1"/*/summary.json 2>/dev/null | wc -l; }
running() { n=0; for p in $PIDS; do kill -0 "$p" 2>/dev/null && n=$((n + 1)); done; echo $n; }
while [ "$(running)" -gt 0 ]; do
    sleep 20
    now=$(( $(date +%s) - START ))
    echo "[$now s] finished: h2h-lenet pilots $(count $RUNS/h2h-lenet/tune)/12 cells $(count $RUNS/h2h-lenet/runs)/18;" \
         "sparsity $(count $RUNS/sparsity/runs)/14; nn-results $(count $RUNS/nn-results)/7"
    [ $now -gt $(( BUDGET_S + 60 )) ] && break
done
wait
for s in h2h-lenet sparsity; do echo "--- $s"; tail -n 4 "$RUNS/$s.log"; done
for f in "$RUNS"/nn-results/*.log; do echo "--- $f"; tail -n 2 "$f"; done

# density and test accuracy of every node model and of the average, into each run's sparsity.json
$PY - "$RUNS" <<'PYEOF'
import sys
from pathlib import Path
from proxgt.reporting.tradeoff import run_sparsity
root = Path(sys.argv[1])
for npz in sorted(list(root.glob("sparsity/runs/*/final.npz")) + list(root.glob("nn-results/*/final.npz"))):
    info = run_sparsity(npz.parent)
    if info is not None:
        print(f"{npz.parent}: node density {max(info['node_density']):.3f}, average {info['avg_density']:.3f}, "
              f"test accuracy nodes {min(info['node_test_accuracy']):.4f}, average {info['avg_test_accuracy']:.4f}")
PYEOF
echo "run_device.sh: done in $(( $(date +%s) - START )) s"
if [ -n "${OUT:-}" ]; then
    tar czf "$OUT/device-runs.tar.gz" --exclude=final.npz --exclude='checkpoint*' \
        "$RUNS/h2h-lenet" "$RUNS/sparsity" "$RUNS/nn-results" && ls -l "$OUT/device-runs.tar.gz"
fi
