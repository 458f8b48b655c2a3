#!/bin/sh
# Drives test_tokenizer: builds the tokenizer.json files from GPT-2's (python3, standard library),
# then runs the C test with them and the tpar program.
# usage: run_test_tokenizer.sh TEST_BIN VECTORS TPAR PYTHON3 DATA_DIR MAKE_HF_JSON
set -u
bin=$1 vectors=$2 tpar=$3 py=$4 data=$5 make_hf=$6
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
hf=""
if command -v "$py" >/dev/null 2>&1 && "$py" "$make_hf" "$data/gpt2-bpe" "$tmp/hf" >/dev/null; then
    hf=$tmp/hf
else
    echo "note: python3 missing or make_hf_json.py failed: the tokenizer.json checks are not run"
fi
exec "$bin" "$vectors" "$hf" "$tpar"
