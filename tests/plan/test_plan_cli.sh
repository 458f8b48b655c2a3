#!/bin/sh
# `tpar plan` from the outside: help, every kind of bad input (exit 2, message naming the
# flag), text and JSON answers (JSON parsed by /usr/bin/python3's json module when present).
# usage: test_plan_cli.sh PATH_TO_TPAR
tpar=$1
. "$(dirname "$0")/../expect.sh"

base="--gpus 64 --gpu a100-80g --global-batch 512"
g3="--model gpt3-175b $base"

# help documents every option
help=$("$tpar" plan --help)
for opt in --model --gpus --gpu --global-batch --tp --pp --dp --micro-batch --recompute --sp --zero \
           --precision --dp-overlap --gemm-eff --top --json gpt3-175b gpt2-124m a100-80g h100-80g \
           LAYERS,HIDDEN,HEADS,VOCAB,SEQ memory_gb_per_gpu tflops_per_gpu mfu step_s comm_compute_ratio fits; do
    expect 0 "$opt" -- printf '%s\n' "$help"
done
expect 0 "usage: tpar plan" -- "$tpar" plan -h

# missing and malformed options
expect 2 "--model is required" -- "$tpar" plan $base
expect 2 "--gpus is required" -- "$tpar" plan --model gpt2-124m --gpu a100-80g --global-batch 8
expect 2 "--gpu is required" -- "$tpar" plan --model gpt2-124m --gpus 8 --global-batch 8
expect 2 "--global-batch is required" -- "$tpar" plan --model gpt2-124m --gpus 8 --gpu a100-80g
expect 2 "unknown option '--bogus'" -- "$tpar" plan $g3 --bogus
expect 2 "unexpected argument 'extra'" -- "$tpar" plan $g3 extra
expect 2 "option '--tp' needs a value" -- "$tpar" plan $g3 --tp

# unknown presets and bad custom forms
expect 2 "--model: unknown model 'gpt5'" -- "$tpar" plan --model gpt5 $base
expect 2 "--model: .* is not LAYERS,HIDDEN,HEADS,VOCAB,SEQ" -- "$tpar" plan --model 12,768,12 $base
expect 2 "--model: LAYERS must be an integer" -- "$tpar" plan --model 0,768,12,50257,1024 $base
expect 2 "--model: HIDDEN must be" -- "$tpar" plan --model 12,-768,12,50257,1024 $base
expect 2 "--model: HIDDEN 770 is not divisible by HEADS 12" -- "$tpar" plan --model 12,770,12,50257,1024 $base
expect 2 "--gpu: unknown hardware 'v100'" -- "$tpar" plan --model gpt2-124m --gpus 8 --gpu v100 --global-batch 8
expect 2 "--gpu: HBM-GBS must be a positive number" -- \
    "$tpar" plan --model gpt2-124m --gpus 8 --gpu 312,80,0,300,25,8 --global-batch 8
expect 2 "--gpu: .* is not TFLOPS" -- "$tpar" plan --model gpt2-124m --gpus 8 --gpu 312,80 --global-batch 8

# zero or negative numbers
expect 2 "--gpus expects an integer in \[1," -- "$tpar" plan --model gpt2-124m --gpus 0 --gpu a100-80g --global-batch 8
expect 2 "--gpus expects an integer" -- "$tpar" plan --model gpt2-124m --gpus -8 --gpu a100-80g --global-batch 8
expect 2 "--global-batch expects an integer" -- "$tpar" plan --model gpt2-124m --gpus 8 --gpu a100-80g --global-batch 0
expect 2 "--tp expects an integer" -- "$tpar" plan $g3 --tp 0
expect 2 "--pp expects an integer" -- "$tpar" plan $g3 --pp -2
expect 2 "--dp expects an integer" -- "$tpar" plan $g3 --dp x
expect 2 "--micro-batch expects an integer" -- "$tpar" plan $g3 --micro-batch 0
expect 2 "--zero expects an integer in \[0, 3\]" -- "$tpar" plan $g3 --zero 4
expect 2 "--gemm-eff expects a number" -- "$tpar" plan $g3 --gemm-eff 0
expect 2 "--recompute expects one of none, selective, full" -- "$tpar" plan $g3 --recompute some
expect 2 "--precision expects one of bf16, fp32" -- "$tpar" plan $g3 --precision fp8
expect 2 "--dp-overlap expects one of off, on" -- "$tpar" plan $g3 --dp-overlap maybe

# layouts that cannot be
expect 2 "--tp 8 x --pp 4 x --dp 4 must equal --gpus 64" -- "$tpar" plan $g3 --tp 8 --pp 4 --dp 4
expect 2 "--tp 5 does not divide the model's 96 attention heads" -- "$tpar" plan $g3 --tp 5
expect 2 "--pp 5 does not divide the model's 96 layers" -- "$tpar" plan $g3 --pp 5
expect 2 "does not divide --gpus 64" -- "$tpar" plan $g3 --pp 3
expect 2 "--global-batch 512 is not divisible by --dp 3" -- "$tpar" plan --model gpt2-124m --gpus 3 \
    --gpu a100-80g --global-batch 512 --dp 3
expect 2 "--global-batch 512 is not divisible by --dp 8 x --micro-batch 3" -- "$tpar" plan $g3 --tp 8 --pp 1 \
    --dp 8 --micro-batch 3
expect 2 "--sp splits the sequence over --tp 3 ranks, which does not divide its length 1000" -- "$tpar" plan \
    --model 12,768,12,50257,1000 --gpus 3 --gpu a100-80g --global-batch 3 --tp 3 --sp
expect 2 "no valid layout" -- "$tpar" plan --model gpt3-175b --gpus 7 --gpu a100-80g --global-batch 512

# answers: a fixed layout, a search, a layout that does not fit
expect 0 "layout: tp 8 x pp 8 x dp 1, micro-batch 1 .* recompute full" -- "$tpar" plan $g3 --tp 8 --pp 8 --dp 1 \
    --micro-batch 1 --recompute full
expect 0 "best 5 of [0-9]+ valid layouts" -- "$tpar" plan $g3
expect 0 "best 2 of" -- "$tpar" plan $g3 --top 2
expect 0 "DOES NOT FIT" -- "$tpar" plan --model gpt3-175b --gpus 8 --gpu a100-80g --global-batch 8 --tp 8 --pp 1 --dp 1
expect 0 "no valid layout fits" -- "$tpar" plan --model gpt3-175b --gpus 8 --gpu a100-80g --global-batch 8
expect 0 "optimizer state \(zero 0\)" -- "$tpar" plan --model gpt2-124m --gpus 1 --gpu 1,24,20,10,10,1 \
    --global-batch 4 --precision fp32

# JSON: one object with the issue's fields, parsed by a real JSON parser
py=/usr/bin/python3
if [ -x "$py" ]; then
    check_json() { # check_json PYTHON_ASSERTIONS -- tpar args...: JSON on stdout meets them
        asserts=$1
        shift 2
        checks=$((checks + 1))
        out=$("$@")
        rc=$?
        res=$(printf '%s\n' "$out" | "$py" -c "import json, sys
r = json.load(sys.stdin)
$asserts
print('ok')" 2>&1)
        if [ "$rc" -ne 0 ] || [ "$res" != ok ]; then
            failed=$((failed + 1))
            echo "FAIL: $* (exit $rc)"
            printf '%s\n' "$res" | sed 's/^/    /'
        fi
    }
    check_json '
m = r["memory_gb_per_gpu"]
parts = ["weights", "gradients", "optimizer", "activations", "comm_buffers"]
assert abs(sum(m[k] for k in parts) - m["total"]) < 1e-3 * m["total"], m
for k in ["tflops_per_gpu", "mfu", "step_s", "comm_compute_ratio"]: assert r[k] > 0, k
assert r["fits"] in (True, False)
L = r["layout"]
assert (L["tp"], L["pp"], L["dp"]) == (8, 8, 1) and L["recompute"] == "full", L
assert 0 < r["mfu"] < 1' -- "$tpar" plan $g3 --tp 8 --pp 8 --dp 1 --recompute full --json
    check_json '
assert len(r["top"]) == 5 and r["valid_layouts"] >= 5
for t in r["top"]:
    L = t["layout"]
    assert L["tp"] * L["pp"] * L["dp"] == 64 and 96 % L["tp"] == 0 and 96 % L["pp"] == 0, L
    assert 512 % (L["dp"] * L["micro_batch"]) == 0, L
assert r["top"][0]["step_s"] == r["step_s"]' -- "$tpar" plan $g3 --json
    check_json '
assert r["fits"] is False and r["memory_gb_per_gpu"]["total"] > r["memory_gb_per_gpu"]["usable"]' -- \
        "$tpar" plan --model gpt3-175b --gpus 8 --gpu a100-80g --global-batch 8 --tp 8 --pp 1 --dp 1 --json
else
    echo "note: $py not found; JSON parsing checks left out"
fi

echo "test_plan_cli: $checks checks, $failed failed"
[ "$failed" -eq 0 ]
