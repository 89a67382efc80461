#!/usr/bin/env bash
# GPU checks (a few minutes on one H100): every section prints its result or its error, and the script goes on.
#
#   bash bench/gpu_check.sh OUTDIR            # run everything; logs and a summary under OUTDIR
#   bash bench/gpu_check.sh --prepare [SRC]   # (on a machine with the data) write bench/data/fashion-mnist
#
# Sections: environment; the CUDA tests (prox, mixing, every problem on cuda against the CPU, no read-back from
# the GPU between logged iterations); MLP and LeNet-5 on Fashion-MNIST with 8 and 64 nodes on cuda, time per
# iteration against a centralized PyTorch loop (the same model, plain SGD, one GPU, the same total batch =
# nodes x batch); a 2-process nccl run against the simulation (needs 2 GPUs, else skipped with a message).
#
# Knobs (environment): SECTIONS (default "environment cuda_tests timings nccl_two_processes"), ITERS (200),
# BATCH (32 per node), MODELS ("mlp lenet"), NODES ("8 64"), DEVICE (cuda).
# Data: $DATA_DIR if set, else bench/data/fashion-mnist (a 16,000/2,000-image subset shipped in the working tree),
# else /usr/share/datasets/fashion-mnist, else random images of the same shape (timings stay meaningful,
# accuracies do not; the script says so). Needs torch with CUDA, numpy, scipy, networkx, tomli-w importable;
# PYTHONPATH=src is set here (no install needed). Python: $PYTHON (default python3).
set -u
py=${PYTHON:-python3}
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here" || exit 1
export PYTHONPATH=$here/src:${PYTHONPATH:-} PYTHONUNBUFFERED=1

if [ "${1:-}" = "--prepare" ]; then
  src=${2:-/usr/share/datasets/fashion-mnist}
  $py - "$src" bench/data/fashion-mnist <<'PY'
import gzip, os, sys
import numpy as np
src, dst = sys.argv[1], sys.argv[2]
os.makedirs(dst, exist_ok=True)
def read(name):
    p = os.path.join(src, name)
    raw = gzip.open(p + ".gz").read() if os.path.exists(p + ".gz") else open(p, "rb").read()
    ndim = raw[3]
    dims = np.frombuffer(raw, ">i4", ndim, 4)
    return raw[: 4 + 4 * ndim], np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim).reshape(dims)
for part, keep in (("train", 16000), ("t10k", 2000)):
    for kind in ("images-idx3-ubyte", "labels-idx1-ubyte"):
        head, arr = read(f"{part}-{kind}")
        arr = arr[:keep]
        dims = np.array(arr.shape, ">i4").tobytes()
        with gzip.open(os.path.join(dst, f"{part}-{kind}.gz"), "wb", compresslevel=9) as fh:
            fh.write(head[:4] + dims + arr.tobytes())
print("wrote", dst, sorted(os.listdir(dst)))
PY
  exit $?
fi

out=${1:-gpu-check}
mkdir -p "$out"
out=$(cd "$out" && pwd)
summary=()

# section NAME FUNCTION: runs FUNCTION, output to the terminal and to OUTDIR/NAME.log; records PASS/FAIL/SKIP
section() {
  local name=$1; shift
  local t0=$SECONDS
  echo
  echo "=================== $name"
  "$@" 2>&1 | tee "$out/$name.log"
  local rc=${PIPESTATUS[0]}
  if [ "$rc" = 0 ]; then
    summary+=("PASS  $name ($((SECONDS - t0)) s)")
  elif [ "$rc" = 77 ]; then
    summary+=("SKIP  $name: $(tail -1 "$out/$name.log")")
  else
    summary+=("FAIL  $name (exit $rc after $((SECONDS - t0)) s; see $out/$name.log)")
  fi
}

environment() {
  nvidia-smi -L || echo "(nvidia-smi not found)"
  $py -c "
import torch
print('torch', torch.__version__, 'cuda', torch.version.cuda, 'available', torch.cuda.is_available())
for i in range(torch.cuda.device_count()):
    print(f'  cuda:{i}', torch.cuda.get_device_name(i))
try:
    print('nccl', torch.distributed.is_nccl_available() and torch.cuda.nccl.version())
except Exception as exc:
    print('nccl: cannot tell:', exc)
assert torch.cuda.is_available(), 'no CUDA device: the GPU sections will fail'
"
}

# -------------------------------------------------------------------- data
find_data() {
  for d in "${DATA_DIR:-}" bench/data/fashion-mnist /usr/share/datasets/fashion-mnist; do
    if [ -n "$d" ] && { [ -e "$d/train-images-idx3-ubyte.gz" ] || [ -e "$d/train-images-idx3-ubyte" ]; }; then
      echo "$d"; return 0
    fi
  done
  return 1
}

data_dir=$(find_data)
if [ -n "$data_dir" ]; then
  data_note="Fashion-MNIST IDX files from $data_dir"
else
  data_dir="$out/random-images"
  data_note="RANDOM images (no Fashion-MNIST found: set DATA_DIR or ship bench/data/fashion-mnist); timings valid, accuracies meaningless"
  $py - "$data_dir" <<'PY'
import gzip, os, sys
import numpy as np
d = sys.argv[1]
os.makedirs(d, exist_ok=True)
rng = np.random.default_rng(0)
for part, n in (("train", 16000), ("t10k", 2000)):
    imgs = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, size=n, dtype=np.uint8)
    for kind, arr, magic in (("images-idx3-ubyte", imgs, 0x803), ("labels-idx1-ubyte", labels, 0x801)):
        with gzip.open(f"{d}/{part}-{kind}.gz", "wb") as fh:
            fh.write(np.array([magic, *arr.shape], ">i4").tobytes() + arr.tobytes())
PY
fi
echo "data: $data_note"

# -------------------------------------------------------------------- tests on cuda
cuda_tests() {
  local rc=0 res
  for tests in "tests/prox tests/mixing -k cuda" "tests/problems/test_cuda_paths.py"; do
    echo "--- pytest $tests"
    # shellcheck disable=SC2086
    res=$(timeout 300 $py -m pytest -q -p no:cacheprovider -rs $tests 2>&1)
    echo "$res" | tail -15
    # a pass needs tests that ran: on a machine without CUDA they all skip
    if echo "$res" | tail -1 | grep -qE "failed|error|no tests ran" || ! echo "$res" | tail -1 | grep -q passed; then
      rc=1
    fi
  done
  return $rc
}

# -------------------------------------------------------------------- timings against a centralized loop
ITERS=${ITERS:-200}
BATCH=${BATCH:-32}
DEVICE=${DEVICE:-cuda}  # DEVICE=cpu ITERS=4 MODELS=mlp NODES=8 checks the script itself without a GPU
MODELS=${MODELS:-mlp lenet}
NODES=${NODES:-8 64}
timings() {
  local rc=0
  printf "%-6s %5s %8s %16s %16s %8s %10s\n" problem nodes batch "proxgt ms/iter" "central ms/iter" ratio test_acc \
    | tee "$out/timings.txt"
  for problem in $MODELS; do
    for nodes in $NODES; do
      local run="$out/$problem-$nodes"
      if ! timeout 600 $py -m proxgt.cli run --problem "$problem" --data fashion-mnist --data-dir "$data_dir" \
          --nodes "$nodes" --topology ring --algorithm proxgt-sa --batch "$BATCH" --iters "$ITERS" \
          --log-every $((ITERS / 2)) --device "$DEVICE" --no-progress --overwrite --out "$run" >"$run.log" 2>&1; then
        echo "FAILED: proxgt run $problem, $nodes nodes:"; tail -5 "$run.log"; rc=1; continue
      fi
      timeout 300 $py - "$problem" "$nodes" "$BATCH" "$ITERS" "$data_dir" "$run" "$DEVICE" >>"$out/timings.txt" \
          2>"$run.central.err" <<'PY'
import csv, sys, time
import torch
from proxgt.data import load_fashion_mnist
from proxgt.registry import PROBLEMS
from proxgt.settings import RunConfig

problem, nodes, batch, iters, data_dir, run, dev = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), \
    int(sys.argv[4]), sys.argv[5], sys.argv[6], sys.argv[7]
sync = torch.cuda.synchronize if dev.startswith("cuda") else (lambda: None)
rows = list(csv.DictReader(open(f"{run}/metrics.csv")))
# wall_s excludes the metrics; rows at 0, iters/2 and iters: the second half, after warm-up
per_iter = (float(rows[-1]["wall_s"]) - float(rows[-2]["wall_s"])) / (iters - int(float(rows[-2]["iter"])))
acc = rows[-1].get("test_accuracy", "")
train = load_fashion_mnist(data_dir)
cfg = RunConfig.from_dict({"problem": problem, "data": "fashion-mnist"}).validate()
model = PROBLEMS.get(problem)(cfg, train).model.to(dev)  # the same network, plain torch
X, y = train.X.to(dev), train.y.to(dev)
opt = torch.optim.SGD(model.parameters(), lr=0.1)
total = nodes * batch
def step():
    idx = torch.randint(len(y), (total,), device=dev)
    opt.zero_grad(set_to_none=True)
    torch.nn.functional.cross_entropy(model(X[idx]), y[idx]).backward()
    opt.step()
for _ in range(min(20, iters)):
    step()
sync()
t0 = time.perf_counter()
for _ in range(iters):
    step()
sync()
central = (time.perf_counter() - t0) / iters
print(f"{problem:6} {nodes:5} {batch:8} {per_iter * 1e3:16.3f} {central * 1e3:16.3f} {per_iter / central:8.2f} "
      f"{float(acc) if acc else float('nan'):10.4f}")
PY
      local crc=$?
      if [ "$crc" != 0 ]; then
        echo "FAILED (exit $crc): centralized loop $problem, $nodes nodes:"; tail -5 "$run.central.err"; rc=1
      fi
      tail -1 "$out/timings.txt"
    done
  done
  echo "proxgt: ProxGT-SA, ring, batch $BATCH per node, ms/iter over iterations $((ITERS / 2))..$ITERS (metrics"
  echo "excluded); central: the same model, torch.optim.SGD on batch nodes x $BATCH, one GPU; ratio = proxgt / central"
  return $rc
}

# -------------------------------------------------------------------- 2 processes, nccl
nccl_two_processes() {
  local gpus
  gpus=$($py -c "import torch; print(torch.cuda.device_count())" 2>/dev/null || echo 0)
  if [ "${gpus:-0}" -lt 2 ]; then
    echo "skipped: nccl needs 2 GPUs (one per process); this machine has ${gpus:-0}"
    return 77
  fi
  local common=(--problem mlp --hidden 64 --data fashion-mnist --data-dir "$data_dir" --nodes 8 --topology ring
                --algorithm proxgt-sa --batch 16 --iters 50 --log-every 25 --dtype float64 --device cuda
                --no-progress --overwrite --timeout 120)
  timeout 300 $py -m proxgt.cli launch --nprocs 2 "${common[@]}" --out "$out/nccl" || return 1
  timeout 300 $py -m proxgt.cli run "${common[@]}" --out "$out/nccl-sim" >/dev/null || return 1
  $py - "$out" <<'PY'
import json, sys
import numpy as np
out = sys.argv[1]
backend = json.load(open(f"{out}/nccl/summary.json"))["distributed"]["backend"]
a, b = (np.load(f"{out}/{d}/final.npz")["x"] for d in ("nccl", "nccl-sim"))
err = float(np.abs(a - b).max())
print(f"backend {backend}; max |x_2proc - x_sim| = {err:.3e} (float64, 50 iterations)")
sys.exit(0 if backend == "nccl" and err < 1e-6 * max(1.0, float(np.abs(b).max())) else 1)
PY
}

for name in ${SECTIONS:-environment cuda_tests timings nccl_two_processes}; do
  section "$name" "$name"
done

echo
echo "=================== summary ($out)"
echo "data: $data_note"
for line in "${summary[@]}"; do echo "$line"; done
[ -s "$out/timings.txt" ] && cat "$out/timings.txt"
printf "%s\n" "${summary[@]}" > "$out/summary.txt"
