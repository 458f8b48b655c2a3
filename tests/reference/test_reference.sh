#!/bin/sh
# tpar against the PyTorch reference (issue #6).
#   test_reference.sh PYTHON gpt2_ref.py TPAR_CLI test_reference
# 1. PyTorch writes a random-init checkpoint (biases and norms random too) and a token batch,
#    and computes in float64 the loss, logits, every gradient and 5 AdamW steps on the batch;
#    tpar loads that checkpoint at TP=1, 2 and 4, and at TP=2 and 4 with sequence parallelism,
#    and compares (test_reference.c: tolerances).
# 2. The other way: tpar initialises and saves a model at TP=2; PyTorch loads tpar's file and
#    computes the reference; tpar loads its file at TP=1, 2 and 4 (resharding) and compares.
# 3. `tpar train` itself (loader, DP all-reduce, clipping, AdamW, lr schedule, resume): PyTorch
#    writes a `tiny` checkpoint tpar can --resume (zero moments, step 0) and data of period T,
#    so that every batch tpar draws is one known row; 5 steps at TP=1, TP=2 x DP=2, TP=4 and
#    TP=2 x DP=2 with --sp, each step's loss, gradient norm and lr compared with torch's AdamW on that batch.
# Prints "skipped: python3-torch not installed" (and exits 0) without torch.
set -eu
py=$1 ref=$2 tpar=$3 exe=$4

work=$(mktemp -d "${TMPDIR:-/tmp}/tpar_ref.XXXXXX")
trap 'rm -rf "$work"' EXIT INT TERM

# A small model that still exercises everything: 2 layers, 4 heads (TP=4 leaves one head per
# rank), a vocabulary of 250 (not a multiple of anything: the padding must be masked),
# B*T = 48 tokens, T = 12 below the 16 positions (unused position rows get zero gradient).
out=$("$py" "$ref" init --layers 2 --heads 4 --embd 32 --vocab 250 --ctx 16 --seed 11 --perturb --std 0.3 \
      --out "$work/torch.safetensors" --batch-out "$work/batch.safetensors" --B 4 --T 12 --batch-seed 5)
case $out in *"skipped: "*) echo "$out"; exit 0 ;; esac

# tpar's defaults (tpar_train_config_default) except a short schedule: warmup 2 of 5 steps,
# so both the warmup and the cosine part run; lr 1e-2 so that 5 steps move the loss visibly.
hyper="--steps 5 --lr 1e-2 --warmup 2 --decay-steps 5 --min-lr-frac 0.1 --beta1 0.9 --beta2 0.95 \
--eps 1e-8 --weight-decay 0.1 --grad-clip 1.0"
# The reference for a model file, then tpar on that file at TP = 1, 2, 4 against it.
ref_and_check() { # MODEL NAME
    # shellcheck disable=SC2086
    "$py" "$ref" ref --model "$1" --batch "$work/batch.safetensors" $hyper --out "$work/ref_$2.safetensors"
    for tp in 1 2 4 "2 sp" "4 sp"; do
        set -- "$1" "$2" $tp
        echo "== the $2 checkpoint in tpar at TP=$3${4:+ with sequence parallelism}"
        "$tpar" launch -n "$3" -- "$exe" check "$1" "$work/batch.safetensors" "$work/ref_$2.safetensors" "$work" ${4:-}
    done
}
ref_and_check "$work/torch.safetensors" PyTorch

echo "== tpar's init, saved at TP=2, in PyTorch"
"$tpar" launch -n 2 -- "$exe" init 1337 "$work/torch.safetensors" "$work/tpar.safetensors"
ref_and_check "$work/tpar.safetensors" tpar

# The tiny preset with weights N(0, 0.15) (logits of std ~1.7), tpar's default hyper-parameters
# (lr 1e-3, AdamW 0.9/0.95/1e-8, weight decay 0.1, clipping at 1) with warmup 2 of 5 steps.
# One repeated row is learnt fast: the loss goes 6.8 -> 0.25 and clipping is active throughout
# (norms 14 .. 2.3 against 1). Tolerance rtol 2e-5 per step on loss and gradient norm: tpar's
# measured worst is 1.8e-6 (11x margin), and PyTorch's own float32 run drifts from its float64
# one by as much (2e-6: Adam's scale-free update amplifies rounding where gradients are ~0; at
# lr 1e-2 that drift reaches 4e-5, too chaotic to test tightly). Weight decay wrongly applied
# to norms and biases moves these losses by 5e-4, 25x the tolerance.
"$py" "$ref" init --ckpt-dir "$work/tiny" --layers 4 --heads 4 --embd 128 --vocab 256 --ctx 128 \
    --perturb --std 0.15 --seed 21 >/dev/null
"$py" "$ref" periodic --T 32 --B 4 --repeat 64 --data-out "$work/periodic.txt" \
    --batch-out "$work/periodic.safetensors" >/dev/null
"$py" "$ref" ref --model "$work/tiny/step_00000000" --batch "$work/periodic.safetensors" --steps 5 \
    --lr 1e-3 --warmup 2 --decay-steps 5 --out "$work/ref_train.safetensors"
for layout in "1 1" "2 2" "4 1" "2 2 --sp"; do
    set -- $layout
    echo "== tpar train from the PyTorch checkpoint, TP=$1 x DP=$2 ${3:-}"
    rm -rf "$work/run"
    cp -r "$work/tiny" "$work/run"
    # batch 4/dp per DP rank: 4 rows per step whatever the layout (all rows are the same).
    # shellcheck disable=SC2086
    "$tpar" train --model tiny --tp "$1" --dp "$2" ${3:-} --batch $((4 / $2)) --seq 32 --steps 5 --lr 1e-3 \
        --warmup 2 --weight-decay 0.1 --grad-clip 1 --data "$work/periodic.txt" --val-every 0 \
        --save-dir "$work/run" --resume --metrics "$work/tp$1_dp$2${3:-}.jsonl" >"$work/train.log" 2>&1 ||
        { cat "$work/train.log"; exit 1; }
    grep -q "resuming from .*step_00000000" "$work/train.log" ||
        { echo "tpar train did not resume from the PyTorch checkpoint:"; cat "$work/train.log"; exit 1; }
    [ -z "${3:-}" ] || grep -q "TP 2 x DP 2 (sequence parallel)" "$work/train.log" ||
        { echo "tpar train --sp did not run sequence parallel:"; cat "$work/train.log"; exit 1; }
done
"$py" "$ref" compare --ref "$work/ref_train.safetensors" --rtol 2e-5 \
    --metrics "$work/tp1_dp1.jsonl" "$work/tp2_dp2.jsonl" "$work/tp4_dp1.jsonl" "$work/tp2_dp2--sp.jsonl"
echo "test_reference: PyTorch and tpar agree at TP=1, 2, 4 (and 2, 4 with SP) in both directions, and through" \
    "tpar train (with and without --sp)"
