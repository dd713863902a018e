#!/usr/bin/env bash
# The one prepared script for a lent GPU machine (DESIGN section 5): environment, the `gpu` tests,
# the GPU benchmarks in quick mode; logs and JSON go to $OUT when it is set. Installs nothing.
# Fails fast, with one clear line, where there is no GPU or no CuPy.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-benchmarks/results}
mkdir -p "$OUT"
PY=${PYTHON:-python}
[ -x .venv/bin/python ] && PY=.venv/bin/python
log="$OUT/gpu_check.log"
exec > >(tee "$log") 2>&1

echo "== environment ($(date -u +%FT%TZ))"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null \
  || { echo "gpu_check: no NVIDIA GPU here (nvidia-smi failed); nothing to check"; exit 1; }
$PY - <<'PY' || { echo "gpu_check: CuPy/torch/cusim not importable with a GPU; see above"; exit 1; }
import sys, numpy, cupy, torch, cusim
from cusim.backend import gpu_available, device_name
print("python", sys.version.split()[0], "numpy", numpy.__version__, "cupy", cupy.__version__,
      "torch", torch.__version__, "cuda available to torch:", torch.cuda.is_available())
assert gpu_available(), "CuPy sees no GPU"
print("device:", device_name("cuda"))
PY
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
status=0
echo "== gpu tests"
timeout 240 $PY -m pytest -q -m gpu -p no:cacheprovider tests 2>&1 | tail -n 30 || status=1
echo "== operator benchmark (quick)"
timeout 180 $PY -m benchmarks.bench_operators --quick --device cuda || status=1
cp benchmarks/results/*.json "$OUT"/ 2>/dev/null || true
echo "== done, status $status"
exit $status
