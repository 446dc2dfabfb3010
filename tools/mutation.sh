#!/usr/bin/env bash
# Mutation testing of the method cores of the five papers (docs/mutation.md).
#
#   tools/mutation.sh [UNIT ...]     UNIT: a group (pfml xbn gsp ccp intra_batch)
#                                    or one core file's stem (pfml_loss, xbn_kalman, ...)
#   tools/mutation.sh --list         the units, their files and tests
#
# mutmut 3.8.1 is installed with `pip install --target` outside the repository
# (not a project dependency) and runs on a scratch copy of the working tree, one
# core file at a time, mutating that file and running only its own test files
# (`-m "not gpu and not slow"`; mutmut runs, per mutant, the tests that cover the
# mutated function, fastest first, stopping at the first failure). Results:
# $MUTATION_DIR/<unit>/results.txt (every mutant and its status) and one summary
# line per unit on stdout. Environment: PYTHON (default .venv/bin/python),
# MUTATION_DIR (default ${TMPDIR:-/tmp}/dml_mutation), MUTATION_CHILDREN
# (mutants in parallel, default 2).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
PY=${PYTHON:-$ROOT/.venv/bin/python}
WORK=${MUTATION_DIR:-${TMPDIR:-/tmp}/dml_mutation}
CHILDREN=${MUTATION_CHILDREN:-2}
LIB=$WORK/lib
C=src/dml_pipelines/core
T=tests/core

# unit|group|core file|its test files (space-separated)
UNITS="
pfml_loss|pfml|$C/losses/pfml.py|$T/losses/test_pfml.py
pfml_method|pfml|$C/methods/pfml.py|$T/methods/test_pfml.py
xbn_method|xbn|$C/methods/xbn.py|$T/methods/test_xbn.py
xbn_kalman|xbn|$C/models/xbn_kalman.py|$T/models/test_xbn_kalman.py
memory|xbn|$C/models/memory.py|$T/models/test_memory.py $T/losses/test_gsp_xbm.py
xbn_norm|xbn|$C/models/xbn_norm.py|$T/models/test_xbn_norm.py
gsp_xbm|gsp|$C/losses/gsp_xbm.py|$T/losses/test_gsp_xbm.py $T/models/test_memory.py
gsp_zsr|gsp|$C/losses/gsp_zsr.py|$T/losses/test_gsp_zsr.py
gsp_method|gsp|$C/methods/gsp.py|$T/methods/test_gsp.py
gsp_pooling|gsp|$C/models/gsp_pooling.py|$T/models/test_gsp_pooling.py
gsp_transport|gsp|$C/models/gsp_transport.py|$T/models/test_gsp_transport.py
ccp_loss|ccp|$C/losses/ccp.py|$T/losses/test_ccp.py
ccp_method|ccp|$C/methods/ccp.py|$T/methods/test_ccp.py
ccp_proxies|ccp|$C/models/ccp_proxies.py|$T/models/test_ccp_proxies.py
kcenter|ccp|$C/models/kcenter.py|$T/models/test_kcenter.py $T/models/test_ccp_proxies.py $T/models/test_ccp_mutants.py
intra_batch_method|intra_batch|$C/methods/intra_batch.py|$T/methods/test_intra_batch.py $T/methods/test_intra_batch_gsp.py
intra_batch_mpn|intra_batch|$C/models/mpn.py|$T/models/test_mpn.py
intra_batch_ce|intra_batch|$C/losses/label_smoothed_ce.py|$T/losses/test_label_smoothed_ce.py
"

if [ "${1:-}" = "--list" ]; then
  echo "$UNITS" | sed '/^$/d' | tr '|' '\t'
  exit 0
fi

selected=()
for want in "${@:-all}"; do
  found=0
  while IFS='|' read -r unit group file tests; do
    [ -n "$unit" ] || continue
    if [ "$want" = all ] || [ "$want" = "$unit" ] || [ "$want" = "$group" ]; then
      selected+=("$unit|$group|$file|$tests")
      found=1
    fi
  done <<< "$UNITS"
  if [ $found = 0 ]; then
    echo "tools/mutation.sh: unknown unit '$want'; see tools/mutation.sh --list" >&2
    exit 2
  fi
done

if [ ! -d "$LIB/mutmut" ]; then
  mkdir -p "$WORK"
  "$PY" -m pip install --quiet --target "$LIB" mutmut==3.8.1 > "$WORK/pip.log" 2>&1 \
    || { cat "$WORK/pip.log" >&2; exit 1; }
fi

for entry in "${selected[@]}"; do
  IFS='|' read -r unit group file tests <<< "$entry"
  # tests added to kill survivors: tests/core/**/test_<group>*_mutants.py
  extra=$(cd "$ROOT" && ls $T/*/test_"$group"*_mutants.py 2>/dev/null || true)
  dir=$WORK/$unit
  rm -rf "$dir" && mkdir -p "$dir"
  # the working tree as it is (tracked and untracked, not ignored files)
  (cd "$ROOT" && git ls-files -z --cached --others --exclude-standard \
    | xargs -0 -I{} sh -c 'test -e "{}" && printf "%s\0" "{}"' \
    | tar --null -T - -cf -) | tar -xf - -C "$dir"
  {
    echo "[mutmut]"
    echo "source_paths = src"
    # torch is not fork-safe once its thread pools started: fork every mutant
    # from a clean server process, not from the one that ran the tests
    echo "process_isolation = forkserver"
    echo "only_mutate = $file"
    echo "pytest_add_cli_args_test_selection ="
    for t in $tests $extra; do echo "    $t"; done
    echo "pytest_add_cli_args ="
    echo "    -m"
    echo "    not gpu and not slow"
    echo "    -p"
    echo "    no:cacheprovider"
    echo "also_copy ="
    echo "    tests"
    echo "    conf"
    echo "    pyproject.toml"
  } > "$dir/setup.cfg"
  (
    cd "$dir"
    export PYTHONPATH="$LIB" KEDRO_DISABLE_TELEMETRY=true OMP_NUM_THREADS=1 DML_QUIET=1
    start=$(date +%s)
    "$PY" -m mutmut run --max-children "$CHILDREN" > run.log 2>&1 || true
    "$PY" -m mutmut results --all true > results.txt 2>&1 || true
    total=$(grep -c ': ' results.txt || true)
    killed=$(grep -c ': killed$' results.txt || true)
    echo "$unit ($file): killed $killed of $total mutants in $(( $(date +%s) - start )) s;" \
      "not killed: $(grep ': ' results.txt | grep -vc ': killed$' || true) ($dir/results.txt)"
  )
done
