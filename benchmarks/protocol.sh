#!/usr/bin/env bash
# Issue 4's quality protocol in parallel pieces, for a lent GPU: per set, one process runs widefield and
# cusim's PINN (then cusim again with each PROTOCOL_VARIANTS entry), another the paper's method (and one
# per further PROTOCOL_PIECES entry), all sets at once. Built when the eager PINN step was bound by the host, so one
# GPU served several processes. The captured step is GPU-bound: on an H100 (2026-12-06) 12 pieces were no faster than
# one process would have been (they time-slice the GPU), so for cusim's default prefer one process
# (`benchmarks.quality --order samples`, gpu_check.sh's `heldout`). Runtimes measured here are shared-GPU times, not
# speeds. Every piece
# writes its JSON after each sample, and stops at the deadline; the pieces are then merged
# (`benchmarks.quality --merge`), the bars taken over the samples both methods finished.
#   bash benchmarks/protocol.sh OUTDIR SECONDS [benchmarks.quality args ...]
# e.g. bash benchmarks/protocol.sh /tmp/p 450 --device cuda --crop 480 --samples 1 2 3 4 5 6 7 8 9 10
# PROTOCOL_SETS (default: all six), PROTOCOL_VARIANTS (default none; e.g. "stall=0.01 tau=1.1,lr=2e-3"),
# PROTOCOL_PIECES (default "paper"; e.g. "paper iterative": the pieces beside widefield+cusim).
# Writes OUTDIR/<set>-{cusim,paper,...,<variant>}.{json,log}, OUTDIR/protocol.{json,md} and
# OUTDIR/variant-<variant>.{json,md}; exit 1 if a merge failed or a reconstruction failed.
set -uo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 2 ] || { echo "usage: bash benchmarks/protocol.sh OUTDIR SECONDS [benchmarks.quality args ...]"; exit 1; }
dir=$1 limit=$2; shift 2
[[ $limit =~ ^[0-9]+$ ]] && [ "$limit" -ge 1 ] || { echo "protocol: SECONDS must be a positive integer, got '$limit'"; exit 1; }
PY=${PYTHON:-}  # PYTHON wins; else the checkout's .venv; else python, python3
if [ -z "$PY" ]; then
  PY=python
  [ -x .venv/bin/python ] && PY=.venv/bin/python
  command -v "$PY" >/dev/null || PY=python3
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" OMP_NUM_THREADS=1 PYTHONUNBUFFERED=1
SETS=${PROTOCOL_SETS:-SIM/microtubules NL_SIM/ccp NL_SIM/er NL_SIM/factin NL_SIM/microtubules LPSIM/microtubules}
VARIANTS=${PROTOCOL_VARIANTS:-}
PIECES=${PROTOCOL_PIECES:-paper}
mkdir -p "$dir"
start=$SECONDS
left() { local l=$((limit - (SECONDS - start))); echo $((l > 1 ? l : 1)); }  # never 0: timeout 0 is none
variant_args() { local kv; for kv in ${1//,/ }; do printf -- '--pinn-param\n%s\n' "$kv"; done; }
tag_of() { local t=${1//\//-}; echo "${t//[^A-Za-z0-9._-]/_}"; }  # a file name from a set or a variant

ran() {  # ran RC NAME: a piece's exit code; the deadline (timeout's 124) is how pieces end, anything else failed
  [ "$1" -eq 0 ] || [ "$1" -eq 124 ] && return 0
  echo "protocol: $2 failed (exit $1); see its log"; return 1
}
cusim_piece() {  # widefield + cusim, then each variant (cusim only) with what is left of the time
  local set=$1 tag rc=0; tag=$(tag_of "$1"); shift
  timeout "$(left)" "$PY" -m benchmarks.quality "$@" --threads 1 --sets "$set" --methods widefield cusim \
    --out "$dir/$tag-cusim.json" >"$dir/$tag-cusim.log" 2>&1
  ran $? "$dir/$tag-cusim" || rc=1
  local v; for v in $VARIANTS; do
    [ "$(left)" -ge 10 ] || break
    mapfile -t extra < <(variant_args "$v")
    timeout "$(left)" "$PY" -m benchmarks.quality "$@" "${extra[@]}" --threads 1 --sets "$set" --methods cusim \
      --out "$dir/$tag-$(tag_of "$v").json" >"$dir/$tag-$(tag_of "$v").log" 2>&1
    ran $? "$dir/$tag-$(tag_of "$v")" || rc=1
  done
  return $rc
}
other_piece() {  # other_piece SET PIECE ARGS...: one more method (or methods) of the set
  local set=$1 piece=$2 name; shift 2; name="$dir/$(tag_of "$set")-$(tag_of "$piece")"
  # shellcheck disable=SC2086  # a piece may name several methods, comma-separated
  timeout "$(left)" "$PY" -m benchmarks.quality "$@" --threads 1 --sets "$set" --methods ${piece//,/ } \
    --out "$name.json" >"$name.log" 2>&1
  ran $? "$name"
}

# this run's files, named exactly (a glob would merge what another run left in OUTDIR); any from before go first,
# so a piece that fails now cannot pass off an old JSON as its own
mine=() variant_files=()
for set in $SETS; do
  mine+=("$dir/$(tag_of "$set")-cusim")
  for piece in $PIECES; do mine+=("$dir/$(tag_of "$set")-$(tag_of "$piece")"); done
  for v in $VARIANTS; do variant_files+=("$dir/$(tag_of "$set")-$(tag_of "$v")"); done
done
for f in "${mine[@]}" ${variant_files[@]+"${variant_files[@]}"}; do rm -f "$f.json" "$f.log"; done  # (bash < 4.4: set -u)
rm -f "$dir/protocol.json" "$dir/protocol.md"
for v in $VARIANTS; do rm -f "$dir/variant-$(tag_of "$v").json" "$dir/variant-$(tag_of "$v").md"; done

echo "protocol: $(wc -w <<<"$SETS") sets x (widefield+cusim, ${PIECES// /, }) at once, ${limit} s, args: $*"
pids=()
for set in $SETS; do
  cusim_piece "$set" "$@" & pids+=($!)
  for piece in $PIECES; do other_piece "$set" "$piece" "$@" & pids+=($!); done
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=1; done  # a bare wait forgot every piece's exit code
echo "protocol: pieces done after $((SECONDS - start)) s"
pieces=()
for f in "${mine[@]}"; do [ -f "$f.json" ] && pieces+=("$f.json"); done
if [ ${#pieces[@]} -eq 0 ]; then
  echo "protocol: no piece wrote a JSON; see $dir/*.log"; tail -n 5 "$dir"/*.log; exit 1
fi
"$PY" -m benchmarks.quality --merge "${pieces[@]}" --out "$dir/protocol.json" --markdown "$dir/protocol.md" || status=1
for v in $VARIANTS; do
  vp=()
  for set in $SETS; do f="$dir/$(tag_of "$set")-$(tag_of "$v").json"; [ -f "$f" ] && vp+=("$f"); done
  [ ${#vp[@]} -gt 0 ] || { echo "protocol: variant $v: no sample finished"; continue; }
  echo "== variant $v (cusim only)"
  "$PY" -m benchmarks.quality --merge "${vp[@]}" --out "$dir/variant-$(tag_of "$v").json" \
    --markdown "$dir/variant-$(tag_of "$v").md" || status=1
done
exit $status
