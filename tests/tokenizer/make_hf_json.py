#!/usr/bin/env python3
"""Builds Hugging Face tokenizer.json files from GPT-2's encoder.json + vocab.bpe (standard library
json only), for test_tokenizer.c: the same vocabulary in HF's layout, other pre-tokenizers, and
broken variants that must be refused with an error naming the file and the field.

usage: make_hf_json.py GPT2_BPE_DIR OUT_DIR
"""
import copy
import json
import os
import sys

src, out = sys.argv[1], sys.argv[2]
os.makedirs(out, exist_ok=True)
with open(os.path.join(src, "encoder.json"), encoding="utf-8") as f:
    vocab = json.load(f)
with open(os.path.join(src, "vocab.bpe"), encoding="utf-8") as f:
    merges = [ln.rstrip("\r\n") for ln in f if ln.strip() and not ln.startswith("#version")]

EOT = {"id": 50256, "content": "<|endoftext|>", "single_word": False, "lstrip": False, "rstrip": False,
       "normalized": True, "special": True}
# The layout of Hugging Face's gpt2 tokenizer.json.
gpt2 = {
    "version": "1.0", "truncation": None, "padding": None, "added_tokens": [EOT], "normalizer": None,
    "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
    "post_processor": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False, "use_regex": True},
    "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
    "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": "",
              "end_of_word_suffix": "", "fuse_unk": False, "byte_fallback": False, "vocab": vocab, "merges": merges},
}


def write(name, obj):
    with open(os.path.join(out, name), "w", encoding="utf-8") as f:
        json.dump(obj, f, ensure_ascii=False)


def variant(name, edit):
    t = copy.deepcopy(gpt2)
    edit(t)
    write(name, t)


def split_seq(regex):
    return {"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": regex}, "behavior": "Isolated", "invert": False},
        {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}]}


os.makedirs(os.path.join(out, "gpt2"), exist_ok=True)
write("gpt2/tokenizer.json", gpt2)
write("gpt2/tokenizer_config.json", {"bos_token": {"content": "<|endoftext|>"}, "eos_token": "<|endoftext|>",
                                     "model_max_length": 1024})
# tokenizers >= 0.20 writes merges as pairs.
variant("gpt2_pairs.json", lambda t: t["model"].update(merges=[m.split(" ") for m in merges]))
# Llama 3's layout (Split with the cl100k pattern, then ByteLevel without its regex) over GPT-2's
# vocabulary, and a Split that keeps the text whole, to check the pieces one by one.
LLAMA3 = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
          r"\s*[\r\n]+|\s+(?!\S)|\s+")
variant("llama3_split.json", lambda t: t.update(pre_tokenizer=split_seq(LLAMA3)))
variant("whole.json", lambda t: t.update(pre_tokenizer=split_seq(r"[\s\S]+")))

# Llama 3's ignore_merges over GPT-2's vocabulary: tiktoken (so js-tiktoken) takes a piece that is
# a token whole too, so the ids must not change.
variant("gpt2_ignore_merges.json", lambda t: t["model"].update(ignore_merges=True))


variant("gpt2_prefix_space.json", lambda t: t["pre_tokenizer"].update(add_prefix_space=True))


# A small vocabulary where ignore_merges matters: merges give "a" + "bc" for "abc", the
# vocabulary also holds "abc" (ids: the 256 byte tokens in byte order, then bc, ab, abc).
def byte_alphabet():
    bs = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


alpha = byte_alphabet()
mini_vocab = {alpha[b]: b for b in range(256)}
mini_vocab.update({"bc": 256, "ab": 257, "abc": 258})
mini = copy.deepcopy(gpt2)
mini["added_tokens"] = []
mini["model"].update(vocab=mini_vocab, merges=["b c", "a b"])
write("mini_plain.json", mini)
mini["model"]["ignore_merges"] = True
write("mini_ignore.json", mini)

# Broken ones.
text = json.dumps(gpt2, ensure_ascii=False)
with open(os.path.join(out, "bad_truncated.json"), "w", encoding="utf-8") as f:
    f.write(text[: len(text) // 2])
variant("bad_wordpiece.json", lambda t: t["model"].update(type="WordPiece"))
variant("bad_no_vocab.json", lambda t: t["model"].pop("vocab"))
variant("bad_no_merges.json", lambda t: t["model"].pop("merges"))
variant("bad_no_model.json", lambda t: t.pop("model"))
variant("bad_merge_unknown.json", lambda t: t["model"]["merges"].insert(7, "Ġt zzzqqq"))
variant("bad_merge_shape.json", lambda t: t["model"]["merges"].insert(3, "Ġt"))
variant("bad_id_type.json", lambda t: t["model"]["vocab"].update({"hello": "12"}))
variant("bad_dup_id.json", lambda t: t["model"]["vocab"].update({"zzzqqq": 5}))
variant("bad_not_bytelevel.json", lambda t: t["model"]["vocab"].update({"a b": 60000}))
variant("bad_normalizer.json", lambda t: t.update(normalizer={"type": "NFC"}))
variant("bad_metaspace.json", lambda t: t.update(pre_tokenizer={"type": "Metaspace", "replacement": "▁"}))
variant("bad_regex.json", lambda t: t.update(pre_tokenizer=split_seq(r"(\p{L}+")))
variant("bad_missing_byte.json", lambda t: t["model"]["vocab"].pop("Ā"))  # byte 0x00's token
variant("bad_byte_fallback.json", lambda t: t["model"].update(byte_fallback=True))
variant("bad_added.json", lambda t: t["added_tokens"].append({"id": "x", "content": 3}))
os.makedirs(os.path.join(out, "bad_config"), exist_ok=True)
write("bad_config/tokenizer.json", gpt2)
write("bad_config/tokenizer_config.json", {"eos_token": "<|nope|>"})
print("made tokenizer.json files in", out)
