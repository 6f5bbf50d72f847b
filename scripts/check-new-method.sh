#!/usr/bin/env bash
# The plugin author's path, end to end (issue 28), run by `make test`: `bench new-method` writes a
# package into a temporary folder, pip installs it (--no-deps, editable), its conformance-kit test
# passes, `bench run --preset tiny` trains and scores it, and `bench leaderboard` shows its row.
# Everything goes to a temporary TALKBENCH_HOME and MLflow store; the package is uninstalled at exit.
set -euo pipefail
BIN="${BIN:-.venv/bin}"
BIN_ABS="$(cd "$BIN" && pwd)"
NAME=ci-demo
work="$(mktemp -d)"
cleanup() {
    "$BIN/python" -m pip uninstall -q -y "talkbench-$NAME" >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT
export TALKBENCH_HOME="$work/home" MLFLOW_TRACKING_URI="sqlite:///$work/home/mlflow.db" OMP_NUM_THREADS=1
mkdir -p "$TALKBENCH_HOME"

"$BIN/bench" new-method "$NAME" --out "$work/pkg" >/dev/null
"$BIN/python" -m pip install -q --no-deps --no-build-isolation -e "$work/pkg"
"$BIN/bench" methods | grep -E "^│ $NAME .*│ synthtalk, tiny" >/dev/null \
    || { echo "check-new-method: bench methods does not list $NAME with presets synthtalk, tiny" >&2; exit 1; }
(cd "$work/pkg" && "$BIN_ABS/python" -m pytest -q -p no:cacheprovider -p no:xdist -o addopts="")
"$BIN/bench" run --method "$NAME" --preset tiny --no-progress --no-leaderboard >/dev/null
row="$("$BIN/bench" leaderboard --format csv 2>/dev/null | grep "^$NAME,tiny," || true)"
if [ -z "$row" ]; then
    echo "check-new-method: no leaderboard row for $NAME (preset tiny)" >&2
    exit 1
fi
echo "check-new-method: $NAME scaffolded, installed, passes the kit, ran; leaderboard row: ${row:0:60}..."
