#!/usr/bin/env bash
# GPU checks of the core on a CUDA machine (a few minutes): the CUDA-vs-CPU prox tests, a simulated run on
# --device cuda against the same run on the CPU, and a checkpoint/resume on cuda through the shared run driver.
# Usage: bash bench/gpu_check_core.sh OUTDIR   (needs torch with CUDA, numpy, scipy, networkx, matplotlib,
# scikit-learn, tqdm and tomli-w importable; PYTHONPATH=src works without installing).
set -u
out=${1:-gpu-check}
mkdir -p "$out"
export PYTHONPATH=src:${PYTHONPATH:-} PYTHONUNBUFFERED=1
py=${PYTHON:-python3}
nvidia-smi -L || true
$py -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), torch.cuda.get_device_name(0))"
echo "== prox: CUDA against CPU"
$py -m pytest -q -p no:cacheprovider tests/prox -k cuda 2>&1 | tail -3
echo "== a9a-synthetic, 16 nodes, ProxGT-SR-E, 300 iterations: cpu and cuda"
common=(--algorithm proxgt-sr-e --data a9a-synthetic --nodes 16 --topology ring --iters 300 --log-every 100
        --dtype float64 --no-progress --overwrite)
for dev in cpu cuda; do
  /usr/bin/time -f "$dev wall %e s" $py -m proxgt.cli run "${common[@]}" --device $dev --out "$out/sre-$dev"
done
$py - "$out" <<'PY'
import sys, numpy as np
out = sys.argv[1]
a, b = (np.load(f"{out}/sre-{d}/final.npz")["x"] for d in ("cpu", "cuda"))
print(f"max |x_cpu - x_cuda| = {np.abs(a - b).max():.3e} (float64, 300 iterations)")
PY
echo "== MLP on digits, 8 nodes, cuda"
$py -m proxgt.cli run --problem mlp --hidden 64 --data digits --nodes 8 --iters 200 --log-every 100 --device cuda \
    --no-progress --overwrite --out "$out/mlp-cuda"
echo "== checkpoint and resume on cuda"
$py -m proxgt.cli run "${common[@]}" --device cuda --iters 40 --checkpoint-every 20 --out "$out/ck" >/dev/null
rm -f "$out/ck/summary.json"
$py -m proxgt.cli run --resume "$out/ck" --no-progress
$py -m proxgt.cli run "${common[@]}" --device cuda --iters 40 --out "$out/ck-ref" >/dev/null
if [ -s "$out/ck/metrics.csv" ] && [ -s "$out/ck-ref/metrics.csv" ] \
   && cmp <(cut -d, -f1-4,6- "$out/ck/metrics.csv") <(cut -d, -f1-4,6- "$out/ck-ref/metrics.csv"); then
  echo "resumed metrics.csv equals the uninterrupted run's (wall_s aside)"
else
  echo "FAILED: resumed metrics.csv differs from the uninterrupted run's, or a run failed"
fi
