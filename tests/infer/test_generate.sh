#!/bin/sh
# `tpar generate` end to end, from a checkpoint that `tpar train` saved at TP=2 (20 tiny steps):
#   - greedy generation at TP=1, TP=2 and TP=4 prints exactly the same bytes, past the model's
#     context of 128 (200 tokens: the window slides, and stderr says so);
#   - sampling (temperature 1, top-k 20) with a fixed seed prints the same bytes at TP=1 and TP=2
#     and when run again, and other bytes with another seed;
#   - stderr reports the time to first token and tokens/s;
#   - bad inputs exit with a clear message before any rank starts (status 2), or with status 1 for
#     a checkpoint that is missing or corrupt;
#   - (issue #23) hostile metadata is refused before anything is sized from it; a corrupt, FIFO'd
#     or non-finite newest checkpoint is skipped with a warning naming why, and the step loaded is
#     printed; non-finite weights given directly are refused naming the tensor.
# usage: test_generate.sh PATH_TO_TPAR DATA_FILE
tpar=$1 data=$2
. "$(dirname "$0")/../expect.sh"
tmp=$(mktemp -d /tmp/tpar_test_generate.XXXXXX)
trap 'rm -rf "$tmp"' EXIT

if ! "$tpar" train --data "$data" --tp 2 --steps 20 --batch 4 --seq 32 --val-every 0 --val-batches 1 \
        --log-every 10 --save-dir "$tmp/ck" >"$tmp/train.log" 2>&1; then
    cat "$tmp/train.log"
    echo "FAIL: tpar train --tp 2 did not save a checkpoint"
    exit 1
fi

same() { # same NAME FILE_A FILE_B
    checks=$((checks + 1))
    if ! cmp -s "$2" "$3"; then
        failed=$((failed + 1))
        echo "FAIL: $1: $2 and $3 differ"
        od -c "$2" | head -5
        od -c "$3" | head -5
    fi
}

gen() { # gen OUT_NAME ARGS...: stdout to $tmp/OUT_NAME, stderr to $tmp/OUT_NAME.err
    name=$1
    shift
    if ! "$tpar" generate --ckpt "$tmp/ck" --prompt "ROMEO:" "$@" >"$tmp/$name" 2>"$tmp/$name.err"; then
        failed=$((failed + 1))
        echo "FAIL: tpar generate $*"
        cat "$tmp/$name.err"
    fi
    checks=$((checks + 1))
}

for tp in 1 2 4; do
    gen greedy$tp --tp $tp --tokens 200 --temperature 0
done
same "greedy TP=1 vs TP=2" "$tmp/greedy1" "$tmp/greedy2"
same "greedy TP=1 vs TP=4" "$tmp/greedy1" "$tmp/greedy4"
expect 0 "time to first token [0-9.]+ ms \| 200 tokens, [0-9.]+ tokens/s \(decode\) \| context window slid" -- \
    cat "$tmp/greedy2.err"

gen s1 --tp 1 --tokens 100 --temperature 1 --top-k 20 --seed 3
gen s2 --tp 2 --tokens 100 --temperature 1 --top-k 20 --seed 3
gen s2b --tp 2 --tokens 100 --temperature 1 --top-k 20 --seed 3
gen s2c --tp 2 --tokens 100 --temperature 1 --top-k 20 --seed 4
same "sampled TP=1 vs TP=2" "$tmp/s1" "$tmp/s2"
same "sampled twice" "$tmp/s2" "$tmp/s2b"
checks=$((checks + 1))
cmp -s "$tmp/s2" "$tmp/s2c" && { failed=$((failed + 1)); echo "FAIL: seeds 3 and 4 sampled the same text"; }

# bad inputs
ck=$tmp/ck
expect 2 "n_head 4 is not divisible by the tensor-parallel size 3" -- "$tpar" generate --ckpt "$ck" --tp 3 --prompt x
expect 2 "the prompt is empty" -- "$tpar" generate --ckpt "$ck" --prompt ""
long=$(printf '%0200d' 0)
expect 2 "the prompt has 200 tokens but the model's context is 128 positions" -- \
    "$tpar" generate --ckpt "$ck" --prompt "$long"
expect 2 "give one of --ckpt DIR .* or --model NAME" -- "$tpar" generate --prompt x
expect 2 "give one of --ckpt DIR .* or --model NAME" -- "$tpar" generate --ckpt "$ck" --model tiny --prompt x
expect 2 "--tokens expects an integer in \[1, " -- "$tpar" generate --ckpt "$ck" --prompt x --tokens 0
expect 2 "--temperature expects a number in \[0, 100\], got '-1'" -- \
    "$tpar" generate --ckpt "$ck" --prompt x --temperature -1
expect 2 "unknown option '--bogus'" -- "$tpar" generate --ckpt "$ck" --prompt x --bogus
expect 2 "unknown model 'gpt7'" -- "$tpar" generate --model gpt7 --prompt x
expect 1 "checkpoint '$tmp/nope' not found" -- "$tpar" generate --ckpt "$tmp/nope" --prompt x
mkdir "$tmp/empty"
expect 1 "no checkpoint in '$tmp/empty'" -- "$tpar" generate --ckpt "$tmp/empty" --prompt x
# a truncated weights file: the manifest's size check refuses it before any rank starts
step=$(cat "$ck/latest")
mkdir "$tmp/trunc" && cp -r "$ck/$step" "$tmp/trunc/"
truncate -s -100 "$tmp/trunc/$step/model.safetensors"
expect 1 "model.safetensors" -- "$tpar" generate --ckpt "$tmp/trunc" --tp 2 --prompt x
# flipped bytes of the same size: the ranks verify checksums before loading
mkdir "$tmp/flip" && cp -r "$ck/$step" "$tmp/flip/"
printf 'XXXX' | dd of="$tmp/flip/$step/model.safetensors" bs=1 seek=5000 conv=notrunc 2>/dev/null
expect 1 "crc" -- "$tpar" generate --ckpt "$tmp/flip" --tp 2 --prompt x
# a weights file of another format
printf 'not a safetensors file at all' >"$tmp/junk.safetensors"
expect 1 "junk.safetensors" -- "$tpar" generate --ckpt "$tmp/junk.safetensors" --prompt x


# ---- issue #23 ----
# Hostile metadata: GPT-2 124M's config and no tensor (a few hundred bytes) is refused by name
# before anything is sized from it (it used to make the ranks allocate gigabytes), and so is an
# n_embd whose 4*C overflows an int.
meta() { # meta FILE N_EMBD: a safetensors file of header only
    python3 -c 'import json, struct, sys
h = json.dumps({"__metadata__": {"n_layer": "12", "n_head": "12", "n_embd": sys.argv[2], "vocab_size": "50257",
                                 "n_positions": "1024", "format": "tpar-gpt2"}}).encode()
open(sys.argv[1], "wb").write(struct.pack("<Q", len(h)) + h)' "$1" "$2"
}
meta "$tmp/meta.safetensors" 768
expect 1 "no tensor named 'wte.weight'" -- "$tpar" generate --ckpt "$tmp/meta.safetensors" --prompt x
meta "$tmp/meta.safetensors" 536870916
expect 1 "the config in its metadata is impossible" -- "$tpar" generate --ckpt "$tmp/meta.safetensors" --prompt x
# Two checkpoints; the newest corrupt in each of three ways. generate says which it skipped and
# why (as resume does), and names the step it loaded.
if ! "$tpar" train --data "$data" --steps 4 --batch 2 --seq 16 --val-every 0 --val-batches 1 --save-every 2 \
        --save-dir "$tmp/two" >"$tmp/two.log" 2>&1; then
    cat "$tmp/two.log"
    echo "FAIL: tpar train did not save two checkpoints"
    exit 1
fi
for how in flip fifo nan; do
    rm -rf "$tmp/$how" && cp -r "$tmp/two" "$tmp/$how"
    newest=$tmp/$how/step_00000004
    case $how in
    flip) printf 'XXXX' | dd of="$newest/model.safetensors" bs=1 seek=5000 conv=notrunc 2>/dev/null ;;
    fifo) rm "$newest/state.json" && mkfifo "$newest/state.json" ;; # used to block open() forever
    nan) # a NaN in wte.weight, the manifest's checksums recomputed (a run that diverged before the check)
        python3 -c 'import json, struct, sys, zlib
d = sys.argv[1]
p = d + "/model.safetensors"
b = bytearray(open(p, "rb").read())
n = struct.unpack("<Q", b[:8])[0]
begin = json.loads(b[8:8 + n])["wte.weight"]["data_offsets"][0]
b[8 + n + begin:8 + n + begin + 4] = struct.pack("<f", float("nan"))
open(p, "wb").write(b)
m = json.load(open(d + "/manifest.json"))
m["files"]["model.safetensors"] = {"size": len(b), "crc32": zlib.crc32(b)}
json.dump(m, open(d + "/manifest.json", "w"))' "$newest" ;;
    esac
    checks=$((checks + 1))
    if ! timeout 60 "$tpar" generate --ckpt "$tmp/$how" --prompt x --tokens 4 >/dev/null 2>"$tmp/$how.err"; then
        failed=$((failed + 1))
        echo "FAIL: generate from a checkpoint directory whose newest is corrupt ($how):"
        cat "$tmp/$how.err"
    fi
    check_file "$how: the warning names the skipped checkpoint" "^warning: skipped checkpoint $newest: " "$tmp/$how.err"
    check_file "$how: the step loaded is printed" "loaded checkpoint step 2 " "$tmp/$how.err"
done
check_file "flip: says why" "tensor 'wte.weight' has crc32 .* \(corrupted\)" "$tmp/flip.err"
check_file "fifo: says why" "state.json: not a regular file" "$tmp/fifo.err"
check_file "nan: says why" "tensor 'wte.weight' holds non-finite values" "$tmp/nan.err"
expect 1 "tensor 'wte.weight' holds a non-finite value \(nan\)" -- \
    "$tpar" generate --ckpt "$tmp/nan/step_00000004/model.safetensors" --prompt x --tokens 4

echo "test_generate: $checks checks, $failed failed"
[ "$failed" -eq 0 ]
