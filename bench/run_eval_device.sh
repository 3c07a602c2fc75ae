#!/usr/bin/env bash
# The faithfulness evaluation on the GPU machine, from prebuilt binaries:
#
#   bench/run_eval_device.sh <dir with bin/ and lib.tar.gz> <output dir> [step ...]
#
# steps (default: check model):
#   check  mixlens-eval --device cpu and --device cuda on the bundled demo checkpoint (two
#          sequences, both modes) and on two Mamba-2 and the Falcon-Mamba fixtures: the two
#          faithfulness.json files compared number by number (bench/eval_compare.py), and --tf32
#          against fp32
#   model  a random Mamba-130m-sized checkpoint made by transformers (MambaConfig defaults of
#          state-spaces/mamba-130m: d_model 768, 24 layers, vocab 50280), 100 random sequences
#          of 512 tokens, mixlens-eval --device cuda --steps 20 with every method (10 random
#          draws): fp32 and --tf32, timed, and the two tables compared
# bin/ holds mixlens-eval and mixlens-eval-cuda built for sm_90; lib.tar.gz the shared libraries
# the build machine linked them against.
set -u -o pipefail
CARRY=$(cd "${1:?carry dir}" && pwd)
OUT=$(mkdir -p "${2:?output dir}" && cd "$2" && pwd)
shift 2
STEPS=" ${*:-check model} "
BIN=$CARRY/bin
[ -d "$CARRY/lib" ] || { mkdir -p "$CARRY/lib" && tar xzf "$CARRY/lib.tar.gz" -C "$CARRY/lib"; }
CUBLAS=$(find /usr/local /opt /usr/lib -name 'libcublasLt.so.13' 2>/dev/null | head -1)
export LD_LIBRARY_PATH=$CARRY/lib:$(dirname "${CUBLAS:-/x/x}"):/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
WORK=$(mktemp -d)
stamp() { echo "== $(date -u +%T) $*"; }

if [[ $STEPS == *" check "* ]]; then
  demo=tests/data/mamba_demo
  python3 -c "import numpy as np; np.save('$WORK/demo_tokens.npy', np.stack([np.load('tests/data/reference/mamba_demo/tokens_0.npy')[:40], np.arange(3, 43)]).astype(np.int64))"
  for mode in replace remove; do
    for dev in cpu cuda; do
      stamp "demo, $mode, $dev"
      "$BIN/mixlens-eval" --model $demo --tokens-file "$WORK/demo_tokens.npy" --steps 8 --mode $mode \
        --random-draws 3 --device $dev --out "$WORK/demo_${mode}_$dev" | tail -3
    done
    python3 bench/eval_compare.py "$WORK/demo_${mode}_cpu/faithfulness.json" "$WORK/demo_${mode}_cuda/faithfulness.json"
  done
  "$BIN/mixlens-eval" --model $demo --tokens-file "$WORK/demo_tokens.npy" --steps 8 --random-draws 3 --device cuda \
    --tf32 --out "$WORK/demo_tf32" | tail -1
  python3 bench/eval_compare.py "$WORK/demo_replace_cuda/faithfulness.json" "$WORK/demo_tf32/faithfulness.json"
  for m in mamba2_ss_mlp mamba2_groups_bf16 falcon_mamba_fp32; do  # Mamba-2 (the gated MLP; groups), Falcon-Mamba
    for dev in cpu cuda; do
      stamp "$m, remove, $dev"
      "$BIN/mixlens-eval" --model tests/data/$m --tokens-file tests/data/reference/$m/tokens_0.npy --steps 6 \
        --mode remove --random-draws 2 --device $dev --out "$WORK/${m}_$dev" | tail -2
    done
    python3 bench/eval_compare.py "$WORK/${m}_cpu/faithfulness.json" "$WORK/${m}_cuda/faithfulness.json"
  done
fi

if [[ $STEPS == *" model "* ]]; then
  stamp "random Mamba-130m-sized checkpoint (transformers)"
  python3 - "$WORK/mamba130m" "$WORK/tokens_100x512.npy" <<'PY'
import sys, numpy as np, torch, transformers
torch.manual_seed(130)
cfg = transformers.MambaConfig(vocab_size=50280, hidden_size=768, num_hidden_layers=24, state_size=16,
                               expand=2, conv_kernel=4, time_step_rank=48)
transformers.MambaForCausalLM(cfg).save_pretrained(sys.argv[1], safe_serialization=True)
np.save(sys.argv[2], np.random.default_rng(512).integers(0, 50277, size=(100, 512)).astype(np.int64))
print("transformers", transformers.__version__, "torch", torch.__version__)
PY
  for precision in fp32 tf32; do
    stamp "mixlens-eval --device cuda, 100 x 512, 20 steps, $precision"
    flag=(); [ $precision = tf32 ] && flag=(--tf32)
    /usr/bin/time -v "$BIN/mixlens-eval" --model "$WORK/mamba130m" --tokens-file "$WORK/tokens_100x512.npy" --steps 20 \
      --device cuda "${flag[@]}" --out "$WORK/eval_$precision" > "$OUT/eval-130m-$precision.txt" 2> "$WORK/time_$precision.txt"
    echo "exit $?"
    cat "$OUT/eval-130m-$precision.txt"
    grep -E "Elapsed|Maximum resident" "$WORK/time_$precision.txt"
    cp "$WORK/eval_$precision/faithfulness.md" "$OUT/eval-130m-$precision.md" 2>/dev/null
  done
  python3 bench/eval_compare.py "$WORK/eval_fp32/faithfulness.json" "$WORK/eval_tf32/faithfulness.json"
fi
rm -rf "$WORK"
