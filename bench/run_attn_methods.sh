#!/usr/bin/env bash
# mixlens-attn on the CPU and with --device cuda, every gradient method on the Mamba-2 and
# Vision Mamba fixtures: prints each attribution.npy's largest difference between the devices.
#   bench/run_attn_methods.sh <carry dir>     (run from the repository root on the GPU machine)
set -u
C=${1:?carry dir with bin/ (mixlens-attn, mixlens-attn-cuda) and lib.tar.gz}
tar xzf $C/lib.tar.gz -C $C
CUBLAS=$(find /usr/local /opt /usr/lib -name 'libcublasLt.so.13' 2>/dev/null | head -1)
export LD_LIBRARY_PATH=$C/lib:$(dirname "${CUBLAS:-/x/x}"):/usr/local/cuda/lib64
export MIXLENS_FONT=$C/lib/font.ttf
T=/tmp/attn; rm -rf $T; mkdir -p $T
for m in grad-input lrp mamba-attr attn-grad; do
  for dev in cpu cuda; do
    $C/bin/mixlens-attn --model tests/data/mamba2_tied_fp32 --tokens 3,1,4,1,5,9,2,6,5,3,5 --out $T/m2_${m}_$dev --method $m --no-png --save-alpha none --device $dev > $T/m2_${m}_$dev.log 2>&1 || { echo "FAIL m2 $m $dev"; tail -3 $T/m2_${m}_$dev.log; }
    $C/bin/mixlens-attn --model tests/data/vim_mid_odd --image tests/data/images/rgb8.png --out $T/vim_${m}_$dev --method $m --no-png --save-alpha none --device $dev > $T/vim_${m}_$dev.log 2>&1 || { echo "FAIL vim $m $dev"; tail -3 $T/vim_${m}_$dev.log; }
  done
done
python3 - <<'PY'
import numpy as np, os, json
T='/tmp/attn'
for fam in ('m2','vim'):
    for m in ('grad-input','lrp','mamba-attr','attn-grad'):
        a=f'{T}/{fam}_{m}_cpu/attribution.npy'; b=f'{T}/{fam}_{m}_cuda/attribution.npy'
        if not (os.path.exists(a) and os.path.exists(b)): print(fam, m, 'missing'); continue
        x=np.load(a).astype(np.float64); y=np.load(b).astype(np.float64)
        tc=json.load(open(f'{T}/{fam}_{m}_cpu/target.json')); tg=json.load(open(f'{T}/{fam}_{m}_cuda/target.json'))
        print(f"{fam:4s} {m:11s} L={x.size:3d} max|cpu-cuda|/max|cpu| = {np.abs(x-y).max()/np.abs(x).max():.2e}  target cpu {tc['token']} {tc['value']:.6g} cuda {tg['token']} {tg['value']:.6g}")
PY
grep -h "^time" $T/*_cuda.log | head -3
