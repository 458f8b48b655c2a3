#!/bin/sh
# bench_vs_torch: tpar at TP=2 against the same GPT-2 in PyTorch (tests/reference/gpt2_ref.py)
# with 2 threads, side by side in one run: training steps (forward, backward, clipping, AdamW)
# of B=4 sequences of T=64 tokens, float32, for GPT-2 124M shapes (vocabulary 50304) and the
# tiny preset. Prints tokens/s of each and the ratio. Target: tpar >= 4x PyTorch on 124M.
#   bench_vs_torch.sh TPAR_CLI PYTHON SOURCE_DIR [STEPS]
# The mean over STEPS timed steps (default 3) after one untimed warm-up step, for both.
set -eu
tpar=$1 py=$2 src=$3 steps=${4:-3}
B=4 T=64

out=$("$py" -c 'import torch' 2>&1) || { echo "bench_vs_torch: skipped: python3-torch not installed"; exit 0; }
work=$(mktemp -d "${TMPDIR:-/tmp}/tpar_bench_torch.XXXXXX")
trap 'rm -rf "$work"' EXIT INT TERM

# tokens/s of a tpar train run: the mean step time of the metrics records after the first.
tpar_tps() {
    "$py" - "$1" "$B" "$T" <<'PYEOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()][1:]
ms = sum(r["ms"] for r in rows) / len(rows)
print("%.1f %.1f" % (int(sys.argv[2]) * int(sys.argv[3]) * 1e3 / ms, ms))
PYEOF
}

printf 'bench_vs_torch: training steps, B=%d T=%d, AdamW, float32; mean of %d steps after 1 warm-up\n' $B $T "$steps"
printf '  PyTorch %s with 2 threads (OMP_WAIT_POLICY=PASSIVE) vs tpar TP=2 (2 ranks, cores / ranks threads each)\n' \
    "$("$py" -c 'import torch; print(torch.__version__)')"
printf '%-10s %6s | %12s %9s | %12s %9s | %10s\n' model vocab "torch tok/s" "ms/step" "tpar tok/s" "ms/step" "tpar/torch"
for spec in "gpt2-124m 12 12 768 50304 1024" "tiny 4 4 128 256 128"; do
    set -- $spec
    name=$1
    # PyTorch: the same shapes. tpar's gpt2-124m preset has the real vocabulary 50257, which it
    # pads in memory to 50304 at TP=2 (a multiple of 64 * tp): the GEMMs are the same size.
    t=$(OMP_WAIT_POLICY=PASSIVE OMP_NUM_THREADS=2 "$py" "$src/bench/bench_vs_torch.py" --layers "$2" \
        --heads "$3" --embd "$4" --vocab "$5" --ctx "$6" --B $B --T $T --steps "$steps" --threads 2)
    torch_tps=$(echo "$t" | sed -n 's/.*tokens_per_s=\([0-9.]*\).*/\1/p')
    torch_ms=$(echo "$t" | sed -n 's/.*ms_per_step=\([0-9.]*\).*/\1/p')
    "$tpar" train --model "$name" --tp 2 --batch $B --seq $T --steps $((steps + 1)) --warmup 1 \
        --val-every 0 --val-batches 1 --data "$src/data/tinyshakespeare.txt" --metrics "$work/$name.jsonl" \
        >"$work/$name.log" 2>&1 || { cat "$work/$name.log"; exit 1; }
    set -- $(tpar_tps "$work/$name.jsonl")
    printf '%-10s %6s | %12.0f %9.1f | %12.0f %9.1f | %9.2fx\n' "$name" "$(echo "$spec" | cut -d' ' -f5)" \
        "$torch_tps" "$torch_ms" "$1" "$2" "$(echo "$1 $torch_tps" | awk '{print $1 / $2}')"
done
echo "target: tpar/torch >= 4 on gpt2-124m"
