#!/usr/bin/env bash
# The one prepared script for a lent GPU machine (DESIGN section 5): environment, the `gpu` tests,
# the GPU benchmarks in quick mode (operators, then `python -m benchmarks --quick --device cuda`); logs,
# JSON and markdown tables go to $OUT when it is set. Installs nothing. Fails fast, with one clear line,
# where there is no GPU or no CuPy.
#   bash benchmarks/gpu_check.sh [PART ...]     PART: tests operators pinn runtime hexagonal heldout budget more quality protocol
# Default: tests pinn runtime operators hexagonal more, in that order (inside 8 minutes). `runtime`: issue 19's
# bar (and issue 18's 1.5 s), the default reconstruction (wall clock) of SIM, NL_SIM and LPSIM sample 1 at 480x480,
# with one network and the fast step beside it (`python -m benchmarks --only pinn_default`). `hexagonal`: issue 20's
# hexagonal SIM at its size, 512x512 camera frames (1024x1024 fine), every method at cusim's defaults.
# `quality` (the fast path's quality at 480x480, then cusim's PINN and the paper's method on the whole 480x480
# SIM/microtubules samples 1-3) takes the time that is left. `protocol`: issue 4's GPU protocol, the whole
# 480x480 samples 1-10 (PROTOCOL_SAMPLES) of all six sets, in parallel pieces (benchmarks/protocol.sh; PROTOCOL_PIECES
# and PROTOCOL_VARIANTS pass through; PROTOCOL_SECONDS caps its share of the budget, else it takes what is left).
# `heldout`: issue 19's held-out table on the whole samples in one process, resuming the committed record (below),
# with what is left, e.g. GPU_CHECK_BUDGET=540 bash benchmarks/gpu_check.sh runtime heldout. `budget`: issue 19's two
# bars at once, on chosen-on samples (below).
# GPU_CHECK_BUDGET (seconds, default 450) bounds the whole script. On a lent machine, whose $OUT hands back 8 files:
#   O=$OUT; OUT=/tmp/gc GPU_CHECK_TAR=$O/gc.tgz bash benchmarks/gpu_check.sh ...
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-benchmarks/results}
mkdir -p "$OUT"
PY=${PYTHON:-}  # PYTHON wins; else the checkout's .venv; else python, python3
if [ -z "$PY" ]; then
  PY=python
  [ -x .venv/bin/python ] && PY=.venv/bin/python
  command -v "$PY" >/dev/null || PY=python3
fi
PARTS=" ${*:-tests pinn runtime operators hexagonal more} "
BUDGET=${GPU_CHECK_BUDGET:-450}
for p in $PARTS; do
  case $p in tests|operators|pinn|runtime|hexagonal|heldout|budget|more|quality|protocol) ;;
    *) echo "gpu_check: unknown part '$p'; expected some of: tests operators pinn runtime hexagonal heldout budget more quality protocol"
       exit 1;; esac
done
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
# Budget: every part has its own timeout, cut to what is left of GPU_CHECK_BUDGET (default 450 s).
part() {  # part NAME SECONDS CMD...: run CMD under a timeout, log to $OUT/NAME.log, note a failure
  local name=$1 limit=$2; shift 2
  [ "$limit" -lt 1 ] && { echo "== $name: skipped, the ${BUDGET} s budget is spent"; return 0; }
  echo "== $name (timeout ${limit} s, at ${SECONDS} s)"
  timeout "$limit" "$@" > >(tee "$OUT/$name.log") 2>&1
  local rc=$?
  [ $rc -eq 124 ] && echo "gpu_check: $name hit its ${limit} s timeout"
  [ $rc -ne 0 ] && status=1
  return 0
}
want() { [[ $PARTS == *" $1 "* ]]; }
cap() { local left=$((BUDGET - SECONDS)); echo $(( $1 < left ? $1 : left )); }  # a part's limit within the budget
# alone: beside the protocol's 18 processes they did not finish in 300 s on an H200; alone, 44 s
# the paper's data: ../shared beside the checkout, or a shared/ folder inside it (what travels to a lent GPU)
data=../shared/data/pinn-sim-paper; [ -d "$data" ] || data=shared/data/pinn-sim-paper
want tests && part gpu_tests "$(cap 150)" $PY -m pytest -q -m gpu -p no:cacheprovider --continue-on-collection-errors tests
# issue 19's runtime bar: the default reconstruction per pattern family, with one network and both with the fast step
# beside it (one run each; alone, before the protocol's processes share the GPU; about 130 s on an H100 projected)
want runtime && part bench_pinn_default "$(cap 200)" $PY -m benchmarks --quick --device cuda --only pinn_default --data "$data" --results "$OUT"
if want protocol; then
  limit=$(( $(cap ${PROTOCOL_SECONDS:-9999}) - 20 ))  # the merge and the reports need a few seconds after the pieces stop
  if [ "$limit" -ge 30 ]; then
    # shellcheck disable=SC2086  # PROTOCOL_SAMPLES is a list
    part protocol $((limit + 15)) bash benchmarks/protocol.sh "$OUT/protocol" "$limit" --data "$data" --device cuda \
      --crop 480 --samples ${PROTOCOL_SAMPLES:-1 2 3 4 5 6 7 8 9 10}
  else
    echo "== protocol: skipped (only $limit s of the budget left)"
  fi
fi
# PINN step at 480x480 K=9 and K=25 (cusim eager float32 and --fast, captured, captured fast, a captured
# ensemble of 4, vs peers a and b; each implementation's timed steps stop after 15 s; set-up, capture and
# steps-in-a-row times apart), then the full 1000-step reconstructions and the default one (wall clock)
want pinn && part bench_pinn_step "$(cap 150)" $PY -m benchmarks --quick --device cuda --only pinn_step --data "$data" --results "$OUT"
want pinn && part bench_pinn_full "$(cap 120)" $PY -m benchmarks --quick --device cuda --only pinn_full --data "$data" --results "$OUT"
# forward+adjoint at 480 and 2048 (K=9, K=25), with the fraction of the bandwidth bound at 2048x2048 K=9
want operators && part bench_operators "$(cap 90)" $PY -m benchmarks.bench_operators --quick --device cuda
# issue 20's hexagonal bars at 512x512 camera frames (estimate, then widefield, Wiener, FISTA + TV and the default
# PINN with the estimated patterns; on the CPU the PINN alone took 2.3 hours on 2 cores: docs/quality.md)
if want hexagonal; then
  part bench_hexagonal "$(cap 150)" $PY -m benchmarks.hexagonal --size 1024 --seeds 0 --device cuda --out hexagonal_1024
  cp benchmarks/results/hexagonal_1024-cuda*.json benchmarks/results/hexagonal_1024-cuda*.md "$OUT"/ 2>/dev/null || true  # -cuda-<device>
fi
# issue 19's held-out table on the whole 480x480 samples (HELDOUT_SAMPLES, default 6-10, all six sets) in ONE process,
# sample-major: the captured step is GPU-bound, and processes sharing the GPU time-slice it (12 protocol processes
# gave no more samples per minute than one, 2026-12-06). It resumes the committed record of the last GPU run
# (HELDOUT_FROM), so only what that lacks runs: first widefield, FISTA + TV and cusim's default, then the paper's
# method, each with what is left of the budget; the markdown is made from the JSON even if a pass is cut short. The
# record holds cusim's default as at b088433: once a default changes, HELDOUT_FROM=none starts the table afresh.
if want heldout; then
  from=${HELDOUT_FROM:-benchmarks/results/heldout_whole-cuda-h100.json}
  [ "$from" = none ] && rm -f "$OUT/heldout.json"  # afresh: not even a table an earlier run left in $OUT
  [ -f "$from" ] && cp "$from" "$OUT/heldout.json"
  for methods in "widefield iterative cusim" "paper"; do
    # shellcheck disable=SC2086  # HELDOUT_SAMPLES and methods are lists
    part "heldout_${methods##* }" $(( $(cap 9999) - 15 )) $PY -m benchmarks.quality --data "$data" --device cuda \
      --crop 480 --samples ${HELDOUT_SAMPLES:-6 7 8 9 10} --methods $methods --order samples --resume --threads 1 \
      --out "$OUT/heldout.json"
  done
  [ -f "$OUT/heldout.json" ] && $PY -m benchmarks.quality --merge "$OUT/heldout.json" --out "$OUT/heldout_all.json" \
    --markdown "$OUT/heldout.md" >/dev/null
fi
# issue 19's runtime bar against its quality bar: the CUDA default's two networks take 12-20 s per whole sample (H100,
# 2026-12-06), one network 6-11 s. Given the same network-steps (about 8 s of steps on an H100), are they better spent
# on the pair capped at BUDGET_STEPS (default 400) or on one network capped at twice that? Both against FISTA + TV,
# on the whole 480x480 samples BUDGET_SAMPLES (default 1 2 3: chosen-on samples, so a default may be chosen from it),
# sample-major, one process per arm, half of what is left each; the markdown names each arm's lead and its runtime.
if want budget; then
  steps=${BUDGET_STEPS:-400}
  for arm in "pair ensemble=2 $steps 2" "one ensemble=1 $((2 * steps)) 1"; do
    read -r name member most share <<< "$arm"  # share: the arms still to run, this one included
    # shellcheck disable=SC2086  # BUDGET_SAMPLES is a list
    part "budget_$name" $(( $(cap 9999) / share - 10 )) $PY -m benchmarks.quality --data "$data" --device cuda \
      --crop 480 --samples ${BUDGET_SAMPLES:-1 2 3} --methods widefield iterative cusim --order samples \
      --pinn-param "$member" --steps "$most" --threads 1 --out "$OUT/budget_$name.json"
    [ -f "$OUT/budget_$name.json" ] && $PY -m benchmarks.quality --merge "$OUT/budget_$name.json" \
      --out "$OUT/budget_${name}_all.json" --markdown "$OUT/budget_$name.md" >/dev/null
  done
fi
if want more; then  # what time is left: iterative, Wiener, scaling 256..4096
  left=$(cap 9999)
  if [ "$left" -ge 30 ]; then
    part bench_more "$left" $PY -m benchmarks --quick --device cuda --only iterative wiener scaling --results "$OUT"
  else
    echo "== scaling, iterative, wiener: skipped (only ${left} s of the budget left)"
  fi
fi
if want quality; then  # issue 6's fast-path quality bar on the whole samples, then issue 4's protocol on them
  part fast_quality "$(cap 150)" $PY -m benchmarks.fast_quality --device cuda --crop 480
  left=$(cap 9999)
  [ "$left" -ge 30 ] && part quality "$left" $PY -m benchmarks.quality --device cuda --crop 480 \
    --sets SIM/microtubules --samples 1 2 3 --methods widefield paper cusim --out "$OUT/quality-cuda.json" \
    --markdown "$OUT/quality-cuda.md"
  cp benchmarks/results/fast_quality-cuda*.json benchmarks/results/fast_quality-cuda*.md "$OUT"/ 2>/dev/null || true
fi
cp benchmarks/results/bench_operators-cuda-*.json "$OUT"/ 2>/dev/null || true
echo "== targets"
grep -h "^TARGET" "$OUT"/bench_*.log 2>/dev/null || true
echo "== done after ${SECONDS} s, status $status"
# a lent machine hands back at most 8 files: GPU_CHECK_TAR=PATH packs everything under $OUT into one archive
if [ -n "${GPU_CHECK_TAR:-}" ]; then
  tar czf "$GPU_CHECK_TAR" -C "$OUT" . && echo "== everything under $OUT is in $GPU_CHECK_TAR"
fi
exit $status
