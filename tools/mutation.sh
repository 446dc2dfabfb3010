#!/usr/bin/env bash
# Mutation testing of the method cores of the five papers (docs/mutation.md).
#
#   tools/mutation.sh [GROUP ...]      GROUP: pfml xbn gsp ccp intra_batch (default: all)
#
# mutmut 3.8.1 is installed with `pip install --target` outside the repository
# (not a project dependency) and runs on a scratch copy of the working tree, one
# group at a time, each group's core files mutated and only its own test files
# run (`-m "not gpu and not slow"`). Results: $MUTATION_DIR/<group>/results.txt
# (every mutant and its status) and one summary line per group on stdout.
# Environment: PYTHON (default .venv/bin/python), MUTATION_DIR (default
# ${TMPDIR:-/tmp}/dml_mutation), MUTATION_CHILDREN (parallel mutants, default 2).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
PY=${PYTHON:-$ROOT/.venv/bin/python}
WORK=${MUTATION_DIR:-${TMPDIR:-/tmp}/dml_mutation}
CHILDREN=${MUTATION_CHILDREN:-2}
LIB=$WORK/lib
C=src/dml_pipelines/core

files_of() {
  case $1 in
    pfml) echo "$C/losses/pfml.py $C/methods/pfml.py" ;;
    xbn) echo "$C/methods/xbn.py $C/models/xbn_kalman.py $C/models/xbn_memory.py $C/models/xbn_norm.py" ;;
    gsp) echo "$C/losses/gsp_xbm.py $C/losses/gsp_zsr.py $C/methods/gsp.py $C/models/gsp_pooling.py $C/models/gsp_transport.py" ;;
    ccp) echo "$C/losses/ccp.py $C/methods/ccp.py $C/models/ccp_proxies.py" ;;
    intra_batch) echo "$C/methods/intra_batch.py $C/models/mpn.py $C/losses/label_smoothed_ce.py" ;;
    *) echo "tools/mutation.sh: unknown group '$1'; valid: pfml xbn gsp ccp intra_batch" >&2; exit 2 ;;
  esac
}

tests_of() {
  local t=tests/core
  case $1 in
    pfml) echo "$t/losses/test_pfml.py $t/methods/test_pfml.py" ;;
    xbn) echo "$t/methods/test_xbn.py $t/models/test_xbn_kalman.py $t/models/test_xbn_memory.py $t/models/test_xbn_norm.py" ;;
    gsp) echo "$t/losses/test_gsp_xbm.py $t/losses/test_gsp_zsr.py $t/methods/test_gsp.py $t/models/test_gsp_pooling.py $t/models/test_gsp_transport.py" ;;
    ccp) echo "$t/losses/test_ccp.py $t/methods/test_ccp.py $t/models/test_ccp_proxies.py" ;;
    intra_batch) echo "$t/methods/test_intra_batch.py $t/models/test_mpn.py $t/losses/test_label_smoothed_ce.py" ;;
  esac
  # tests added to kill survivors: tests/core/**/test_<group>*_mutants.py
  (cd "$ROOT" && ls tests/core/*/test_"$1"*_mutants.py 2>/dev/null || true)
}

if [ ! -d "$LIB/mutmut" ]; then
  mkdir -p "$WORK"
  "$PY" -m pip install --quiet --target "$LIB" mutmut==3.8.1 > "$WORK/pip.log" 2>&1 \
    || { cat "$WORK/pip.log" >&2; exit 1; }
fi

groups=("$@")
[ ${#groups[@]} -gt 0 ] || groups=(pfml xbn gsp ccp intra_batch)

for g in "${groups[@]}"; do
  files=$(files_of "$g")
  tests=$(tests_of "$g")
  dir=$WORK/$g
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
    echo "only_mutate ="
    for f in $files; do echo "    $f"; done
    echo "pytest_add_cli_args_test_selection ="
    for t in $tests; do echo "    $t"; done
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
    "$PY" -m mutmut run --max-children "$CHILDREN" > run.log 2>&1 || true
    "$PY" -m mutmut results --all true > results.txt 2>&1 || true
    total=$(grep -c ': ' results.txt || true)
    killed=$(grep -c ': killed$' results.txt || true)
    echo "$g: killed $killed of $total mutants ($(grep -v ': killed$' results.txt | grep -c ': ' || true) not killed); $dir/results.txt"
  )
done
