#!/bin/sh
# tpar against the PyTorch reference (issue #6).
#   test_reference.sh PYTHON gpt2_ref.py TPAR_CLI test_reference
# 1. PyTorch writes a random-init checkpoint (biases and norms random too) and a token batch,
#    and computes in float64 the loss, logits, every gradient and 5 AdamW steps on the batch;
#    tpar loads that checkpoint at TP=1, 2 and 4 and compares (test_reference.c: tolerances).
# 2. The other way: tpar initialises and saves a model at TP=2; PyTorch loads tpar's file and
#    computes the reference; tpar loads its file at TP=1, 2 and 4 (resharding) and compares.
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
# shellcheck disable=SC2086
"$py" "$ref" ref --model "$work/torch.safetensors" --batch "$work/batch.safetensors" $hyper \
    --out "$work/ref_torch.safetensors"
for tp in 1 2 4; do
    echo "== a PyTorch checkpoint in tpar at TP=$tp"
    "$tpar" launch -n "$tp" -- "$exe" check "$work/torch.safetensors" "$work/batch.safetensors" \
        "$work/ref_torch.safetensors" "$work"
done

echo "== a tpar checkpoint (tpar's init, saved at TP=2) in PyTorch"
"$tpar" launch -n 2 -- "$exe" init 1337 "$work/torch.safetensors" "$work/tpar.safetensors"
# shellcheck disable=SC2086
"$py" "$ref" ref --model "$work/tpar.safetensors" --batch "$work/batch.safetensors" $hyper \
    --out "$work/ref_tpar.safetensors"
for tp in 1 2 4; do
    echo "== the tpar checkpoint against PyTorch at TP=$tp"
    "$tpar" launch -n "$tp" -- "$exe" check "$work/tpar.safetensors" "$work/batch.safetensors" \
        "$work/ref_tpar.safetensors" "$work"
done
echo "test_reference: PyTorch and tpar agree at TP=1, 2, 4, both directions"
