/* The byte-level BPE tokenizer against an independent implementation, and its failure modes.
 *
 *   test_tokenizer VECTORS.json [HF_DIR [TPAR]]
 *
 * VECTORS.json was made by make_vectors.mjs with js-tiktoken (GPT-2's encoding) and V8's Unicode
 * regular expressions (Llama 3's pre-tokenizer pattern): the ids must be identical. HF_DIR holds
 * the tokenizer.json files make_hf_json.py built from the same GPT-2 files (the HF layout, other
 * pre-tokenizers, broken variants). TPAR is the program, for `tpar tokenize` end to end. */
#define _XOPEN_SOURCE 700
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "tpar/io.h"
#include "tpar/tokenizer.h"

#ifndef TPAR_DATA_DIR
#error "TPAR_DATA_DIR must name the repository's data directory"
#endif
#define GPT2_DIR TPAR_DATA_DIR "/gpt2-bpe"

static tpar_err_t err;

typedef struct {
    int32_t *ids;
    size_t n, cap;
} ids_t;

static ids_t enc(tpar_tokenizer_t *tk, const void *s, size_t len, int flags) {
    ids_t r = {0};
    CHECK_MUST(tpar_tokenizer_encode(tk, s, len, flags, &r.ids, &r.n, &r.cap, &err), err);
    return r;
}

/* decode(encode(s)) == s, byte for byte; returns the ids (caller frees). */
static ids_t roundtrip(tpar_tokenizer_t *tk, const char *name, const void *s, size_t len) {
    ids_t r = enc(tk, s, len, 0);
    char *out = NULL;
    size_t olen = 0;
    CHECK_MUST(tpar_tokenizer_decode(tk, r.ids, r.n, &out, &olen, &err), err);
    if (!check_record_(olen == len && memcmp(out, s, len) == 0, __FILE__, __LINE__, "decode(encode(x)) == x"))
        fprintf(stderr, "  case '%s': %zu bytes in, %zu out\n", name, len, olen);
    free(out);
    return r;
}

static int same_ids(const char *what, const char *name, const int32_t *want, size_t nw, const int32_t *got,
                    size_t ng) {
    size_t i = 0;
    while (i < nw && i < ng && want[i] == got[i]) i++;
    int ok = nw == ng && i == nw;
    if (!check_record_(ok, __FILE__, __LINE__, what))
        fprintf(stderr, "  case '%s': %zu ids expected, %zu got; first difference at %zu (%d vs %d)\n", name, nw, ng,
                i, i < nw ? (int)want[i] : -1, i < ng ? (int)got[i] : -1);
    return ok;
}

/* Every vector of js-tiktoken's GPT-2 encoding: identical ids, exact round trip. */
static void check_vectors(tpar_tokenizer_t *tk, json_t *cases, const char *what) {
    size_t i;
    json_t *c;
    json_array_foreach(cases, i, c) {
        const char *name = json_string_value(json_object_get(c, "name"));
        json_t *text = json_object_get(c, "text"), *ids = json_object_get(c, "ids");
        size_t n = json_array_size(ids);
        int32_t *want = malloc((n + 1) * sizeof *want);
        if (!want) exit(1);
        for (size_t k = 0; k < n; k++) want[k] = (int32_t)json_integer_value(json_array_get(ids, k));
        ids_t got = roundtrip(tk, name, json_string_value(text), json_string_length(text));
        same_ids(what, name, want, n, got.ids, got.n);
        free(want);
        free(got.ids);
    }
}

/* Bytes that are not UTF-8, and every byte value: the text comes back exactly. */
static void check_bytes(tpar_tokenizer_t *tk) {
    static const struct {
        const char *name;
        const char *s;
        size_t n;
    } cases[] = {
        {"lone continuation", "a\x80" "b\xbf", 4},
        {"truncated sequences", "\xe6\x97 x\xf0\x9f\x98 y\xc3", 10},
        {"overlong and surrogate", "\xc0\xaf \xed\xa0\x80 \xf8\x88\x80\x80\x80", 12},
        {"invalid bytes", "\xfe\xff\xfe \xff", 5},
        {"nul bytes", "a\0b\0\0c", 6},
        {"mixed valid and not", "caf\xc3\xa9 \xc3 na\xc3\xafve \x9f\x98\x80 \xf0\x9f\x98\x80", 22},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) free(roundtrip(tk, cases[i].name, cases[i].s, cases[i].n).ids);
    unsigned char all[512];
    for (int i = 0; i < 512; i++) all[i] = (unsigned char)(i < 256 ? i : 511 - i);
    ids_t r = roundtrip(tk, "all 256 bytes", all, sizeof all);
    int in_vocab = 1;
    for (size_t i = 0; i < r.n; i++) in_vocab &= r.ids[i] >= 0 && r.ids[i] < tpar_tokenizer_vocab_size(tk);
    CHECK(in_vocab);
    free(r.ids);
    // Random bytes from a fixed-seed generator (xorshift), half of them ASCII.
    unsigned char *rnd = malloc(100000);
    if (!rnd) exit(1);
    uint64_t x = 88172645463325252ull;
    for (size_t i = 0; i < 100000; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        rnd[i] = (unsigned char)(x & 1 ? 32 + (x >> 8) % 95 : x >> 16);
    }
    free(roundtrip(tk, "random bytes", rnd, 100000).ids);
    free(rnd);
}

/* Long runs are single pieces: merging must stay O(n log n) and exact. */
static void check_long_runs(tpar_tokenizer_t *tk) {
    size_t n = 1 << 20;
    char *s = malloc(n);
    if (!s) exit(1);
    memset(s, ' ', n);
    s[n - 1] = 'x';
    ids_t r = roundtrip(tk, "a megabyte of spaces", s, n);
    // GPT-2 has no token of several spaces: \s+(?!\S) takes all but the last space, then " x".
    CHECK_EQ_INT(n - 1, r.n);
    free(r.ids);
    for (size_t i = 0; i < n; i++) s[i] = (char)('0' + (i * 7) % 10);
    r = roundtrip(tk, "a megabyte of digits", s, n);
    CHECK(r.n > 1 && r.n < n / 2); /* one piece, merged (GPT-2 has tokens of 2 and 3 digits) */
    free(r.ids);
    free(s);
}

static void check_special(tpar_tokenizer_t *tk) {
    const char *s = "a<|endoftext|>b<|endoftext|><|endoftext";
    CHECK_EQ_INT(50256, tpar_tokenizer_eos(tk));
    CHECK_EQ_INT(50256, tpar_tokenizer_bos(tk));
    CHECK_EQ_INT(50257, tpar_tokenizer_vocab_size(tk));
    ids_t sp = enc(tk, s, strlen(s), TPAR_TOK_SPECIAL), plain = enc(tk, s, strlen(s), 0);
    int count = 0, plain_count = 0;
    for (size_t i = 0; i < sp.n; i++) count += sp.ids[i] == 50256;
    for (size_t i = 0; i < plain.n; i++) plain_count += plain.ids[i] == 50256;
    CHECK_EQ_INT(2, count);       /* the third one is incomplete */
    CHECK_EQ_INT(0, plain_count); /* ordinary text without the flag */
    char *out;
    size_t olen;
    CHECK_MUST(tpar_tokenizer_decode(tk, sp.ids, sp.n, &out, &olen, &err), err);
    CHECK(olen == strlen(s) && memcmp(out, s, olen) == 0);
    free(out);
    free(sp.ids);
    free(plain.ids);
    int32_t bad[2] = {5, 50257};
    CHECK_EQ_INT(TPAR_ERR_INVALID_ARG, tpar_tokenizer_decode(tk, bad, 2, &out, &olen, &err));
    CHECK_STR_CONTAINS(err.msg, "position 1");
    size_t tl;
    const unsigned char *t = tpar_tokenizer_token(tk, 220, &tl); /* GPT-2's 'Ġ', a space */
    CHECK(t && tl == 1 && t[0] == ' ');
    CHECK_EQ_INT(220, tpar_tokenizer_lookup(tk, " ", 1));
}

/* The same text twice (the second time from the cache), and a text with more distinct pieces than
 * the cache holds: the ids do not change. */
static void check_cache(tpar_tokenizer_t *tk, json_t *cases) {
    FILE *f = fopen(TPAR_DATA_DIR "/tinyshakespeare.txt", "rb");
    if (!f) {
        CHECK(!"tinyshakespeare.txt readable");
        return;
    }
    static char buf[1 << 21];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    ids_t a = roundtrip(tk, "tinyshakespeare", buf, n), b = enc(tk, buf, n, 0);
    same_ids("tinyshakespeare twice", "tinyshakespeare", a.ids, a.n, b.ids, b.n);
    // 100k distinct words overflow the cache (it starts over when half full).
    char *w = malloc(100000 * 12);
    size_t len = 0;
    for (int i = 0; i < 100000; i++) len += (size_t)sprintf(w + len, " q%dz", i * 7919);
    free(roundtrip(tk, "distinct words", w, len).ids);
    free(w);
    check_vectors(tk, cases, "GPT-2 ids after the cache was reset");
    free(a.ids);
    free(b.ids);
}

static void check_bad_gpt2(const char *dir) {
    char enc_path[512], bpe[512];
    snprintf(enc_path, sizeof enc_path, "%s/encoder.json", GPT2_DIR);
    snprintf(bpe, sizeof bpe, "%s/vocab.bpe", dir);
    FILE *f = fopen(bpe, "w");
    if (!f) exit(1);
    fprintf(f, "#version: 0.2\n\xc4\xa0 t\n\xc4\xa0t zzzqqq\n");
    fclose(f);
    tpar_tokenizer_t *tk = NULL;
    CHECK_EQ_INT(TPAR_ERR_CORRUPT, tpar_tokenizer_load_gpt2(enc_path, bpe, &tk, &err));
    CHECK_STR_CONTAINS(err.msg, "vocab.bpe: line 3");
    CHECK_STR_CONTAINS(err.msg, "zzzqqq");
    CHECK(tk == NULL);
    f = fopen(bpe, "w");
    fprintf(f, "#version: 0.2\n\xc4\xa0 t x\n");
    fclose(f);
    CHECK_EQ_INT(TPAR_ERR_CORRUPT, tpar_tokenizer_load_gpt2(enc_path, bpe, &tk, &err));
    CHECK_STR_CONTAINS(err.msg, "line 2");
    CHECK_EQ_INT(TPAR_ERR_IO, tpar_tokenizer_load_gpt2(enc_path, "/nonexistent/vocab.bpe", &tk, &err));
    CHECK_STR_CONTAINS(err.msg, "/nonexistent/vocab.bpe");
    CHECK_EQ_INT(TPAR_ERR_IO, tpar_tokenizer_load(dir, &tk, &err)); /* only a vocab.bpe there */
    CHECK_STR_CONTAINS(err.msg, "neither tokenizer.json");
    unlink(bpe);
    CHECK_EQ_INT(TPAR_ERR_IO, tpar_tokenizer_load(TPAR_DATA_DIR, &tk, &err)); /* a directory without one */
}

static void check_hf(tpar_tokenizer_t *ref, const char *hf, json_t *vectors) {
    char p[600], q[600];
    tpar_tokenizer_t *tk;
    // GPT-2 in Hugging Face's layout (with tokenizer_config.json): the same ids.
    snprintf(p, sizeof p, "%s/gpt2", hf);
    CHECK_MUST(tpar_tokenizer_load(p, &tk, &err), err);
    CHECK_EQ_INT(tpar_tokenizer_vocab_size(ref), tpar_tokenizer_vocab_size(tk));
    CHECK_EQ_INT(50256, tpar_tokenizer_bos(tk));
    CHECK_EQ_INT(50256, tpar_tokenizer_eos(tk));
    check_vectors(tk, json_object_get(vectors, "gpt2"), "tokenizer.json ids == js-tiktoken");
    check_special(tk);
    tpar_tokenizer_free(tk);
    snprintf(p, sizeof p, "%s/gpt2_pairs.json", hf);
    CHECK_MUST(tpar_tokenizer_load(p, &tk, &err), err);
    check_vectors(tk, json_object_get(vectors, "gpt2"), "tokenizer.json (merges as pairs) ids == js-tiktoken");
    tpar_tokenizer_free(tk);

    snprintf(p, sizeof p, "%s/gpt2_ignore_merges.json", hf);
    CHECK_MUST(tpar_tokenizer_load(p, &tk, &err), err);
    check_vectors(tk, json_object_get(vectors, "gpt2"), "ignore_merges ids == js-tiktoken (which does the same)");
    tpar_tokenizer_free(tk);
    // ByteLevel's add_prefix_space: "Hello world" encodes as " Hello world" does without it.
    snprintf(p, sizeof p, "%s/gpt2_prefix_space.json", hf);
    CHECK_MUST(tpar_tokenizer_load(p, &tk, &err), err);
    ids_t a = enc(tk, "Hello world", 11, 0), b = enc(ref, " Hello world", 12, 0), x1 = enc(tk, " x", 2, 0),
          x2 = enc(ref, " x", 2, 0);
    same_ids("add_prefix_space", "Hello world", b.ids, b.n, a.ids, a.n);
    same_ids("add_prefix_space, text already starting with a space", " x", x2.ids, x2.n, x1.ids, x1.n);
    free(a.ids), free(b.ids), free(x1.ids), free(x2.ids);
    tpar_tokenizer_free(tk);
    // ignore_merges where it matters: bytes are ids 0-255 in byte order, then bc 256, ab 257, abc 258;
    // merges "b c" (rank 0) then "a b": "abc" merges to a + bc; with ignore_merges it is abc.
    snprintf(p, sizeof p, "%s/mini_plain.json", hf);
    CHECK_MUST(tpar_tokenizer_load(p, &tk, &err), err);
    ids_t r = enc(tk, "abc abx", 7, 0);
    CHECK(r.n == 5 && r.ids[0] == 'a' && r.ids[1] == 256 && r.ids[2] == ' ' && r.ids[3] == 257 && r.ids[4] == 'x');
    free(r.ids);
    tpar_tokenizer_free(tk);
    snprintf(p, sizeof p, "%s/mini_ignore.json", hf);
    CHECK_MUST(tpar_tokenizer_load(p, &tk, &err), err);
    r = enc(tk, "abc abx", 7, 0);
    CHECK(r.n == 4 && r.ids[0] == 258 && r.ids[1] == ' ' && r.ids[2] == 257 && r.ids[3] == 'x');
    free(r.ids);
    tpar_tokenizer_free(tk);

    // Llama 3's pattern: tpar's pieces are V8's, piece by piece (each BPE'd whole).
    tpar_tokenizer_t *split, *whole;
    snprintf(p, sizeof p, "%s/llama3_split.json", hf);
    snprintf(q, sizeof q, "%s/whole.json", hf);
    CHECK_MUST(tpar_tokenizer_load(p, &split, &err), err);
    CHECK_MUST(tpar_tokenizer_load(q, &whole, &err), err);
    size_t i;
    json_t *c;
    json_array_foreach(json_object_get(json_object_get(vectors, "llama3_split"), "cases"), i, c) {
        const char *name = json_string_value(json_object_get(c, "name"));
        json_t *text = json_object_get(c, "text"), *pieces = json_object_get(c, "pieces"), *pc;
        ids_t want = {0};
        size_t k;
        json_array_foreach(pieces, k, pc) CHECK_MUST(tpar_tokenizer_encode(whole, json_string_value(pc),
                                                                           json_string_length(pc), 0, &want.ids,
                                                                           &want.n, &want.cap, &err),
                                                     err);
        ids_t got = roundtrip(split, name, json_string_value(text), json_string_length(text));
        same_ids("Llama 3 pattern pieces == V8's", name, want.ids, want.n, got.ids, got.n);
        free(want.ids);
        free(got.ids);
    }
    check_bytes(split); /* invalid UTF-8 through a Split regex */
    check_long_runs(split);
    size_t big = 1 << 20;
    char *mix = malloc(big);
    if (!mix) exit(1);
    for (size_t k = 0; k < big; k++) mix[k] = "a \n\r.'1\t"[k % 8 < 3 ? 0 : (k * 2654435761u >> 7) % 8];
    free(roundtrip(split, "a megabyte of mixed letters, spaces, newlines, marks", mix, big).ids);
    memset(mix, 'a', big);
    free(roundtrip(split, "a megabyte of letters", mix, big).ids);
    free(mix);
    tpar_tokenizer_free(split);
    tpar_tokenizer_free(whole);

    static const struct {
        const char *file, *field;
        tpar_status code;
    } bad[] = {
        {"bad_truncated.json", "not valid JSON", TPAR_ERR_CORRUPT},
        {"bad_wordpiece.json", "model.type is \"WordPiece\"", TPAR_ERR_UNSUPPORTED},
        {"bad_no_vocab.json", "model.vocab missing", TPAR_ERR_CORRUPT},
        {"bad_no_merges.json", "model.merges missing", TPAR_ERR_CORRUPT},
        {"bad_no_model.json", "model missing", TPAR_ERR_CORRUPT},
        {"bad_merge_unknown.json", "model.merges[7]: merge references unknown token 'zzzqqq'", TPAR_ERR_CORRUPT},
        {"bad_merge_shape.json", "model.merges[3]", TPAR_ERR_CORRUPT},
        {"bad_id_type.json", "model.vocab['hello']: the id is not an integer", TPAR_ERR_CORRUPT},
        {"bad_dup_id.json", "model.vocab[", TPAR_ERR_CORRUPT},
        {"bad_not_bytelevel.json", "model.vocab: token 'a b' is not in GPT-2's byte-level alphabet", TPAR_ERR_CORRUPT},
        {"bad_normalizer.json", "normalizer.type \"NFC\"", TPAR_ERR_UNSUPPORTED},
        {"bad_metaspace.json", "pre_tokenizer.type \"Metaspace\"", TPAR_ERR_UNSUPPORTED},
        {"bad_regex.json", "pre_tokenizer.pretokenizers[0]: regular expression does not compile", TPAR_ERR_CORRUPT},
        {"bad_missing_byte.json", "bad_missing_byte.json", TPAR_ERR_UNSUPPORTED},
        {"bad_byte_fallback.json", "model.byte_fallback", TPAR_ERR_UNSUPPORTED},
        {"bad_added.json", "added_tokens[1]", TPAR_ERR_CORRUPT},
        {"bad_config", "tokenizer_config.json: eos_token '<|nope|>'", TPAR_ERR_CORRUPT},
    };
    for (size_t b = 0; b < sizeof bad / sizeof bad[0]; b++) {
        snprintf(p, sizeof p, "%s/%s", hf, bad[b].file);
        tk = NULL;
        tpar_status st = tpar_tokenizer_load(p, &tk, &err);
        if (!check_record_(st != TPAR_OK && tk == NULL, __FILE__, __LINE__, "a broken tokenizer file is refused"))
            fprintf(stderr, "  %s loaded\n", bad[b].file);
        if (bad[b].code != TPAR_ERR_UNSUPPORTED || strcmp(bad[b].file, "bad_missing_byte.json"))
            CHECK_EQ_INT(bad[b].code, st);
        CHECK_STR_CONTAINS(err.msg, bad[b].file);
        CHECK_STR_CONTAINS(err.msg, bad[b].field);
        tpar_tokenizer_free(tk);
    }
}

static int write_file(const char *path, const void *s, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    size_t w = fwrite(s, 1, n, f);
    return fclose(f) != 0 || w != n ? -1 : 0;
}

/* `tpar tokenize` end to end: its token file loads through io's reader, holds the library's
 * ids, and decodes to the inputs. */
static void check_cli(tpar_tokenizer_t *tk, const char *tpar, const char *dir) {
    char a[512], b[512], out[512], cmd[4096];
    snprintf(a, sizeof a, "%s/a.txt", dir);
    snprintf(b, sizeof b, "%s/b.txt", dir);
    snprintf(out, sizeof out, "%s/out.tokens", dir);
    const char *ta = "First Citizen:\nBefore we proceed any further, hear me speak.\n",
               *tb = "Ünïcödé 日本語 \xff\xfe emoji 👨‍👩‍👧 <|endoftext|> end\n";
    if (write_file(a, ta, strlen(ta)) || write_file(b, tb, strlen(tb))) exit(1);
    snprintf(cmd, sizeof cmd, "'%s' tokenize '%s' '%s' -o '%s' --tokenizer '%s' 2>'%s/log'", tpar, a, b, out, GPT2_DIR, dir);
    CHECK_EQ_INT(0, system(cmd));
    tpar_tokens_t t;
    CHECK_MUST(tpar_tokens_load(out, &t, &err), err);
    CHECK_EQ_INT(50257, t.vocab);
    ids_t want = enc(tk, ta, strlen(ta), 0);
    CHECK_MUST(tpar_tokenizer_encode(tk, tb, strlen(tb), 0, &want.ids, &want.n, &want.cap, &err), err);
    same_ids("tpar tokenize == the library", "two files", want.ids, want.n, t.data, t.n);
    char *text;
    size_t len;
    CHECK_MUST(tpar_tokenizer_decode(tk, t.data, t.n, &text, &len, &err), err);
    CHECK(len == strlen(ta) + strlen(tb) && memcmp(text, ta, strlen(ta)) == 0 &&
          memcmp(text + strlen(ta), tb, strlen(tb)) == 0);
    free(text);
    tpar_tokens_free(&t);
    // --eos after each file and --special: one more token per file, and the special one.
    snprintf(cmd, sizeof cmd, "'%s' tokenize '%s' '%s' -o '%s' --eos --special 2>'%s/log'", tpar, a, b, out, dir);
    CHECK_EQ_INT(0, system(cmd));
    CHECK_MUST(tpar_tokens_load(out, &t, &err), err);
    size_t eos = 0;
    for (size_t i = 0; i < t.n; i++) eos += t.data[i] == 50256;
    CHECK_EQ_INT(3, eos);
    CHECK_EQ_INT(50256, t.data[t.n - 1]);
    tpar_tokens_free(&t);
    // Errors: a missing input, a bad tokenizer.
    snprintf(cmd, sizeof cmd, "'%s' tokenize '%s/missing.txt' -o '%s' 2>'%s/log'", tpar, dir, out, dir);
    CHECK(system(cmd) != 0);
    snprintf(cmd, sizeof cmd, "'%s' tokenize '%s' -o '%s' --tokenizer '%s' 2>'%s/log'", tpar, a, out, a, dir);
    CHECK(system(cmd) != 0);
    snprintf(cmd, sizeof cmd, "'%s' tokenize '%s' 2>'%s/log'", tpar, a, dir); /* no -o */
    CHECK(system(cmd) != 0);
    free(want.ids);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: test_tokenizer VECTORS.json [HF_DIR [TPAR]]\n");
        return 2;
    }
    json_error_t je;
    json_t *vectors = json_load_file(argv[1], 0, &je);
    if (!vectors) {
        fprintf(stderr, "%s:%d: %s\n", argv[1], je.line, je.text);
        return 1;
    }
    tpar_tokenizer_t *tk;
    CHECK_MUST(tpar_tokenizer_load(GPT2_DIR, &tk, &err), err);
    check_vectors(tk, json_object_get(vectors, "gpt2"), "encoder.json + vocab.bpe ids == js-tiktoken");
    check_special(tk);
    check_bytes(tk);
    check_long_runs(tk);
    check_cache(tk, json_object_get(vectors, "gpt2"));
    char tmp[] = "/tmp/tpar_tok_XXXXXX";
    if (!mkdtemp(tmp)) return 1;
    check_bad_gpt2(tmp);
    if (argc > 2 && argv[2][0]) check_hf(tk, argv[2], vectors);
    else printf("note: no HF_DIR (python3 missing?): tokenizer.json checks not run\n");
    if (argc > 3) check_cli(tk, argv[3], tmp);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmp);
    tpar_tokenizer_free(tk);
    json_decref(vectors);
    return check_finish("test_tokenizer");
}
