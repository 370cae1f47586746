#!/usr/bin/env bash
# Benchmark (not a test): `mlxk list --json` and `mlxk health --json` against mlx-knife 2.0.8
# on the same synthetic cache of COUNT models (default 200), side by side in one run.
# Prints mean times and the speed-up ratio. Needs hyperfine (installed by scripts/setup.sh).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
COUNT="${1:-200}"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
VENV="$ROOT/.venv-bench"

"$ROOT/scripts/setup.sh" >/dev/null
if [ ! -x "$VENV/bin/mlxk" ]; then
  echo "[bench] installing mlx-knife 2.0.8 into $VENV" >&2
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check --no-deps mlx-knife==2.0.8
  "$VENV/bin/pip" install -q --disable-pip-version-check -r "$ROOT/bench/requirements-mlx-knife.txt"
fi

cargo build --release --quiet --manifest-path "$ROOT/Cargo.toml" -p mlxk-cli -p mlxk-fixtures
WORK="$(mktemp -d -t mlxk-bench-XXXXXX)"
trap 'rm -rf "$WORK"' EXIT
export HF_HOME="$WORK/hf_home" HOME="$WORK" HF_HUB_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1
unset HF_HUB_CACHE
"$TARGET/release/mlxk-fixtures" synthetic "$HF_HOME" "$COUNT"
echo "[bench] synthetic cache: $COUNT models, $(du -sh "$HF_HOME" | cut -f1)" >&2

OURS="$TARGET/release/mlxk"
THEIRS="$VENV/bin/mlxk"
# Same answer first: both see every model.
ours_count=$("$OURS" list --all --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["data"]["count"])')
theirs_count=$("$THEIRS" list --all --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["data"]["models"]))')
echo "[bench] models listed: mlxk $ours_count, mlx-knife $theirs_count" >&2

for cmd in "list --json" "health --json"; do
  out="$WORK/$(echo "$cmd" | cut -d' ' -f1).json"
  hyperfine --style basic --warmup 2 --min-runs 10 -N -i \
    --export-json "$out" -n "mlxk (rust) $cmd" "$OURS $cmd" -n "mlx-knife 2.0.8 $cmd" "$THEIRS $cmd" >&2
  python3 - "$out" "$cmd" <<'PY'
import json, sys
results = json.load(open(sys.argv[1]))["results"]
ours, theirs = results[0], results[1]
ratio = theirs["mean"] / ours["mean"]
print(f"{sys.argv[2]:<18} mlxk {ours['mean']*1000:8.1f} ms   mlx-knife {theirs['mean']*1000:8.1f} ms   ratio {ratio:6.1f}x")
PY
done
