#!/usr/bin/env bash
# mixlens-attn's selected rows (--rows) and (B, L) token files on both devices:
# the same command with --device cpu and --device cuda, every .npy compared.
#   bench/run_rows_device.sh <bin dir with mixlens-attn and mixlens-attn-cuda> <output dir>
set -u -o pipefail
BIN=$(cd "${1:?bin dir}" && pwd)
OUT=$(mkdir -p "${2:?output dir}" && cd "$2" && pwd)
MODEL=tests/data/mamba_demo
TOK=$OUT/tokens_200.npy
python3 -c "import numpy as np; np.save('$TOK', np.array([(t * 37 + 11) % 256 for t in range(200)], dtype=np.int64))"
status=0
run() {  # name, then mixlens-attn arguments
  local name=$1; shift
  for dev in cpu cuda; do
    rm -rf "$OUT/$name-$dev"
    "$BIN/mixlens-attn" --model $MODEL --out "$OUT/$name-$dev" --device $dev --no-png "$@" > "$OUT/$name-$dev.log" 2>&1 ||
      { echo "$name $dev: exit $?"; tail -3 "$OUT/$name-$dev.log"; status=1; }
  done
  python3 - "$OUT/$name-cpu" "$OUT/$name-cuda" "$name" <<'PY' || status=1
import pathlib, sys, numpy as np
a, b, name = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]), sys.argv[3]
files = sorted(p.relative_to(a) for p in a.rglob("*.npy"))
if not files: sys.exit(f"{name}: no .npy written")
worst = 0.0
for f in files:
    x, y = np.load(a / f).astype(np.float64), np.load(b / f).astype(np.float64)
    if x.shape != y.shape: sys.exit(f"{name}: {f} shapes {x.shape} and {y.shape}")
    if x.dtype.kind in "iu" or f.name.startswith("tokens"): continue
    worst = max(worst, float(np.max(np.abs(x - y)) / max(np.max(np.abs(x)), 1e-30)))
print(f"{name}: {len(files)} files, worst max|cpu-cuda|/max|cpu| = {worst:.2e}")
sys.exit(0 if worst < 1e-5 else 1)
PY
}
run rows --tokens-file "$TOK" --rows last,0,57 --save-alpha 0
run rows_rowrange --tokens-file "$TOK" --rows 3,199 --raw-range rows
run batch --tokens-file tests/data/tokens/batch_3x20.npy
run batch_rows --tokens-file tests/data/tokens/batch_3x20.npy --rows last
run full --tokens-file "$TOK" --save-alpha none
exit $status
