/* Loading a byte-level BPE tokenizer: Hugging Face tokenizer.json (+ tokenizer_config.json) or
 * GPT-2's encoder.json + vocab.bpe. Every error names the file and the field. */
#define _XOPEN_SOURCE 700
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tok_internal.h"

enum { TOK_MAX_FILE = 1 << 30 }; /* a tokenizer file over 1 GiB is not one */

/* Reads a whole regular file (a FIFO or a directory in its place is an error, not a hang). */
static tpar_status read_file(const char *path, char **buf, size_t *len, tpar_err_t *err) {
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) return tpar_err_set(err, TPAR_ERR_IO, "cannot open %s: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode) || sb.st_size > TOK_MAX_FILE) {
        close(fd);
        return tpar_err_set(err, TPAR_ERR_IO, "%s is not a regular file of at most 1 GiB", path);
    }
    size_t n = (size_t)sb.st_size, got = 0;
    char *b = malloc(n + 1);
    if (!b) {
        close(fd);
        return tpar_err_set(err, TPAR_ERR_NOMEM, "out of memory reading %s", path);
    }
    while (got < n) {
        ssize_t r = read(fd, b + got, n - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            int e = errno;
            free(b);
            close(fd);
            return tpar_err_set(err, TPAR_ERR_IO, "cannot read %s: %s", path, r < 0 ? strerror(e) : "short read");
        }
        got += (size_t)r;
    }
    close(fd);
    b[n] = '\0';
    *buf = b;
    *len = n;
    return TPAR_OK;
}

static tpar_status load_json(const char *path, json_t **out, tpar_err_t *err) {
    char *buf;
    size_t len;
    tpar_status st = read_file(path, &buf, &len, err);
    if (st != TPAR_OK) return st;
    json_error_t je;
    *out = json_loadb(buf, len, 0, &je);
    free(buf);
    if (!*out)
        return tpar_err_set(err, TPAR_ERR_CORRUPT, "%s:%d:%d: not valid JSON: %s", path, je.line, je.column, je.text);
    return TPAR_OK;
}

/* A token string of the byte-level alphabet -> its bytes, into buf (at least len bytes). */
static tpar_status bl_bytes(const char *path, const char *field, const char *s, size_t len, unsigned char *buf,
                            size_t *blen, tpar_err_t *err) {
    long k = tok_bytelevel_decode(s, len, buf);
    if (k <= 0)
        return tpar_err_set(err, TPAR_ERR_CORRUPT,
                            "%s: %s: token '%.60s' is not in GPT-2's byte-level alphabet (is this a byte-level BPE?)",
                            path, field, s);
    *blen = (size_t)k;
    return TPAR_OK;
}

/* vocab: {"token": id, ...} in the byte-level alphabet. */
static tpar_status load_vocab(tpar_tokenizer_t *tk, const char *path, const char *field, json_t *vocab,
                              tpar_err_t *err) {
    if (!json_is_object(vocab))
        return tpar_err_set(err, TPAR_ERR_CORRUPT, "%s: %s must be an object of token -> id", path, field);
    if (json_object_size(vocab) == 0) return tpar_err_set(err, TPAR_ERR_CORRUPT, "%s: %s is empty", path, field);
    const char *key;
    json_t *v;
    unsigned char buf[1024];
    char where[200];
    json_object_foreach(vocab, key, v) {
        size_t kl = strlen(key), bl = 0;
        snprintf(where, sizeof where, "%s: %s['%.40s']", path, field, key);
        if (kl > sizeof buf) return tpar_err_set(err, TPAR_ERR_CORRUPT, "%s: token too long", where);
        if (!json_is_integer(v)) return tpar_err_set(err, TPAR_ERR_CORRUPT, "%s: the id is not an integer", where);
        tpar_status st = bl_bytes(path, field, key, kl, buf, &bl, err);
        if (st == TPAR_OK) st = tok_add(tk, buf, bl, json_integer_value(v), 0, where, err);
        if (st != TPAR_OK) return st;
    }
    return TPAR_OK;
}

/* One merge "a b" (or ["a", "b"]): the ids of a, b and a+b must all exist. */
static tpar_status add_merge_str(tpar_tokenizer_t *tk, const char *path, const char *where, const char *a, size_t al,
                                 const char *b, size_t bl, tpar_err_t *err) {
    unsigned char buf[2048];
    size_t n1 = 0, n2 = 0;
    if (al == 0 || bl == 0 || al > 1000 || bl > 1000)
        return tpar_err_set(err, TPAR_ERR_CORRUPT, "%s: %s: a merge needs two non-empty tokens", path, where);
    tpar_status st = bl_bytes(path, where, a, al, buf, &n1, err);
    if (st == TPAR_OK) st = bl_bytes(path, where, b, bl, buf + n1, &n2, err);
    if (st != TPAR_OK) return st;
    int32_t l = tpar_tokenizer_lookup(tk, buf, n1), r = tpar_tokenizer_lookup(tk, buf + n1, n2),
            m = tpar_tokenizer_lookup(tk, buf, n1 + n2);
    if (l < 0)
        return tpar_err_set(err, TPAR_ERR_CORRUPT, "%s: %s: merge references unknown token '%.*s'", path, where,
                            (int)al, a);
    if (r < 0)
        return tpar_err_set(err, TPAR_ERR_CORRUPT, "%s: %s: merge references unknown token '%.*s'", path, where,
                            (int)bl, b);
    if (m < 0)
        return tpar_err_set(err, TPAR_ERR_CORRUPT, "%s: %s: the merge of '%.*s' and '%.*s' is not in the vocabulary",
                            path, where, (int)al, a, (int)bl, b);
    return tok_add_merge(tk, l, r, m, err);
}

static tpar_status finish_desc(tpar_tokenizer_t *tk, const char *path, tpar_err_t *err) {
    tpar_status st = tok_finish(tk, path, err);
    if (st != TPAR_OK) return st;
    snprintf(tk->desc, sizeof tk->desc, "byte-level BPE, %d tokens, %zu merges, from %.400s", tk->nvocab, tk->nmerges,
             path);
    return TPAR_OK;
}

tpar_status tpar_tokenizer_load_gpt2(const char *encoder_json, const char *vocab_bpe, tpar_tokenizer_t **out,
                                     tpar_err_t *err) {
    if (!encoder_json || !vocab_bpe || !out)
        return tpar_err_set(err, TPAR_ERR_INVALID_ARG, "tpar_tokenizer_load_gpt2: NULL argument");
    *out = NULL;
    tpar_tokenizer_t *tk;
    tpar_status st = tok_new(&tk, err);
    if (st != TPAR_OK) return st;
    json_t *enc = NULL;
    char *bpe = NULL;
    size_t blen;
    if ((st = load_json(encoder_json, &enc, err)) != TPAR_OK) goto done;
    if ((st = load_vocab(tk, encoder_json, "(top level)", enc, err)) != TPAR_OK) goto done;
    if ((st = read_file(vocab_bpe, &bpe, &blen, err)) != TPAR_OK) goto done;
    if (memchr(bpe, '\0', blen)) {
        st = tpar_err_set(err, TPAR_ERR_CORRUPT, "%s: a NUL byte: not a merges file", vocab_bpe);
        goto done;
    }
    // vocab.bpe: "#version: 0.2", then one merge "a b" per line in rank order.
    char *line = bpe, where[64];
    for (long ln = 1; line && *line; ln++) {
        char *nl = strchr(line, '\n'), *end = nl ? nl : line + strlen(line);
        if (end > line && end[-1] == '\r') end--;
        if (!(ln == 1 && strncmp(line, "#version", 8) == 0) && end > line) {
            char *sp = memchr(line, ' ', (size_t)(end - line));
            snprintf(where, sizeof where, "line %ld", ln);
            if (!sp || memchr(sp + 1, ' ', (size_t)(end - sp - 1))) {
                st = tpar_err_set(err, TPAR_ERR_CORRUPT, "%s: %s: expected two tokens separated by one space", vocab_bpe,
                                  where);
                goto done;
            }
            st = add_merge_str(tk, vocab_bpe, where, line, (size_t)(sp - line), sp + 1, (size_t)(end - sp - 1), err);
            if (st != TPAR_OK) goto done;
        }
        line = nl ? nl + 1 : NULL;
    }
    if (tk->nmerges == 0) {
        st = tpar_err_set(err, TPAR_ERR_CORRUPT, "%s: no merges", vocab_bpe);
        goto done;
    }
    tk->eos = tk->bos = tpar_tokenizer_lookup(tk, "<|endoftext|>", 13);
    if (tk->eos >= 0 && (st = tok_add_special(tk, tk->eos, err)) != TPAR_OK) goto done;
    if ((st = tok_add_stage(tk, TPAR_TOK_GPT2_PATTERN, "GPT-2 pattern", err)) != TPAR_OK) goto done;
    st = finish_desc(tk, encoder_json, err);
done:
    json_decref(enc);
    free(bpe);
    if (st != TPAR_OK) tpar_tokenizer_free(tk);
    else *out = tk;
    return st;
}

/* ---- tokenizer.json ------------------------------------------------------------------------ */

static const char *type_of(json_t *o) { return json_string_value(json_object_get(o, "type")); }

/* One pre-tokenizer (not a Sequence); *bytelevel set when it is the ByteLevel one. */
static tpar_status pretok_one(tpar_tokenizer_t *tk, const char *path, const char *field, json_t *p, int *bytelevel,
                              tpar_err_t *err) {
    const char *t = type_of(p);
    if (!t) return tpar_err_set(err, TPAR_ERR_CORRUPT, "%s: %s.type missing", path, field);
    char where[200];
    snprintf(where, sizeof where, "%s: %s", path, field);
    if (!strcmp(t, "ByteLevel")) {
        *bytelevel = 1;
        json_t *aps = json_object_get(p, "add_prefix_space"), *ur = json_object_get(p, "use_regex");
        if (json_is_true(aps)) tk->add_prefix_space = 1;
        if (!ur || json_is_true(ur)) return tok_add_stage(tk, TPAR_TOK_GPT2_PATTERN, where, err);
        return TPAR_OK;
    }
    if (!strcmp(t, "Split")) {
        json_t *pat = json_object_get(p, "pattern");
        const char *behavior = json_string_value(json_object_get(p, "behavior"));
        if (!json_is_object(pat)) return tpar_err_set(err, TPAR_ERR_CORRUPT, "%s: %s.pattern missing", path, field);
        if (json_is_true(json_object_get(p, "invert")) || !behavior || strcmp(behavior, "Isolated"))
            return tpar_err_set(err, TPAR_ERR_UNSUPPORTED,
                                "%s: %s: only Split with behavior \"Isolated\" and invert false is supported", path,
                                field);
        const char *re = json_string_value(json_object_get(pat, "Regex"));
        if (re) return tok_add_stage(tk, re, where, err);
        return tpar_err_set(err, TPAR_ERR_UNSUPPORTED, "%s: %s.pattern: only a Regex pattern is supported", path,
                            field);
    }
    if (!strcmp(t, "Digits")) /* digits as their own pieces, one by one or in runs */
        return tok_add_stage(tk, json_is_true(json_object_get(p, "individual_digits")) ? "\\p{N}" : "\\p{N}+", where,
                             err);
    return tpar_err_set(err, TPAR_ERR_UNSUPPORTED, "%s: %s.type \"%s\" is not supported (ByteLevel, Split, Digits)",
                        path, field, t);
}

static tpar_status load_pretok(tpar_tokenizer_t *tk, const char *path, json_t *root, tpar_err_t *err) {
    json_t *p = json_object_get(root, "pre_tokenizer");
    if (!json_is_object(p))
        return tpar_err_set(err, TPAR_ERR_UNSUPPORTED, "%s: pre_tokenizer missing: not a byte-level BPE", path);
    int bytelevel = 0;
    tpar_status st;
    const char *t = type_of(p);
    if (t && !strcmp(t, "Sequence")) {
        json_t *list = json_object_get(p, "pretokenizers");
        if (!json_is_array(list))
            return tpar_err_set(err, TPAR_ERR_CORRUPT, "%s: pre_tokenizer.pretokenizers missing", path);
        size_t i;
        json_t *e;
        char field[64];
        json_array_foreach(list, i, e) {
            snprintf(field, sizeof field, "pre_tokenizer.pretokenizers[%zu]", i);
            if ((st = pretok_one(tk, path, field, e, &bytelevel, err)) != TPAR_OK) return st;
        }
    } else if ((st = pretok_one(tk, path, "pre_tokenizer", p, &bytelevel, err)) != TPAR_OK) {
        return st;
    }
    if (!bytelevel)
        return tpar_err_set(err, TPAR_ERR_UNSUPPORTED, "%s: pre_tokenizer has no ByteLevel step: not a byte-level BPE",
                            path);
    if (tk->nstages == 0)
        return tpar_err_set(err, TPAR_ERR_UNSUPPORTED, "%s: pre_tokenizer splits nothing (no regex)", path);
    return TPAR_OK;
}

/* bos_token / eos_token of tokenizer_config.json: a string or {"content": ...}. */
static tpar_status config_token(tpar_tokenizer_t *tk, const char *path, json_t *cfg, const char *field, int32_t *id,
                                tpar_err_t *err) {
    json_t *v = json_object_get(cfg, field);
    if (!v || json_is_null(v)) return TPAR_OK;
    if (json_is_object(v)) v = json_object_get(v, "content");
    if (!json_is_string(v))
        return tpar_err_set(err, TPAR_ERR_CORRUPT, "%s: %s must be a string or {\"content\": string}", path, field);
    int32_t t = tpar_tokenizer_lookup(tk, json_string_value(v), json_string_length(v));
    if (t < 0)
        return tpar_err_set(err, TPAR_ERR_CORRUPT, "%s: %s '%.60s' is not a token of the vocabulary", path, field,
                            json_string_value(v));
    *id = t;
    return TPAR_OK;
}

tpar_status tpar_tokenizer_load_hf(const char *tokenizer_json, const char *config, tpar_tokenizer_t **out,
                                   tpar_err_t *err) {
    if (!tokenizer_json || !out) return tpar_err_set(err, TPAR_ERR_INVALID_ARG, "tpar_tokenizer_load_hf: NULL argument");
    *out = NULL;
    const char *path = tokenizer_json;
    tpar_tokenizer_t *tk;
    tpar_status st = tok_new(&tk, err);
    if (st != TPAR_OK) return st;
    json_t *root = NULL, *cfg = NULL;
    if ((st = load_json(path, &root, err)) != TPAR_OK) goto done;
    json_t *model = json_object_get(root, "model");
    const char *mtype = json_string_value(json_object_get(model, "type"));
    if (!json_is_object(model)) {
        st = tpar_err_set(err, TPAR_ERR_CORRUPT, "%s: model missing", path);
        goto done;
    }
    if (!mtype || strcmp(mtype, "BPE")) {
        st = tpar_err_set(err, mtype ? TPAR_ERR_UNSUPPORTED : TPAR_ERR_CORRUPT, "%s: model.type is %s%s%s, expected \"BPE\"",
                          path, mtype ? "\"" : "", mtype ? mtype : "missing", mtype ? "\"" : "");
        goto done;
    }
    json_t *norm = json_object_get(root, "normalizer");
    if (norm && !json_is_null(norm)) {
        const char *nt = type_of(norm);
        st = tpar_err_set(err, TPAR_ERR_UNSUPPORTED, "%s: normalizer.type \"%s\" is not supported (only null)", path,
                          nt ? nt : "?");
        goto done;
    }
    static const char *must_be_null[] = {"dropout", "continuing_subword_prefix", "end_of_word_suffix"};
    for (size_t i = 0; i < 3; i++) {
        json_t *v = json_object_get(model, must_be_null[i]);
        if (v && !json_is_null(v) && !(json_is_string(v) && json_string_length(v) == 0)) {
            st = tpar_err_set(err, TPAR_ERR_UNSUPPORTED, "%s: model.%s is set; only null is supported", path,
                              must_be_null[i]);
            goto done;
        }
    }
    if (json_is_true(json_object_get(model, "byte_fallback"))) {
        st = tpar_err_set(err, TPAR_ERR_UNSUPPORTED, "%s: model.byte_fallback is true: a SentencePiece-style BPE, not "
                          "byte-level", path);
        goto done;
    }
    tk->ignore_merges = json_is_true(json_object_get(model, "ignore_merges"));
    json_t *vocab = json_object_get(model, "vocab"), *merges = json_object_get(model, "merges");
    if (!vocab) {
        st = tpar_err_set(err, TPAR_ERR_CORRUPT, "%s: model.vocab missing", path);
        goto done;
    }
    if ((st = load_vocab(tk, path, "model.vocab", vocab, err)) != TPAR_OK) goto done;
    if (!json_is_array(merges)) {
        st = tpar_err_set(err, TPAR_ERR_CORRUPT, "%s: model.merges missing or not an array", path);
        goto done;
    }
    size_t i;
    json_t *m;
    char where[64];
    json_array_foreach(merges, i, m) {
        snprintf(where, sizeof where, "model.merges[%zu]", i);
        if (json_is_string(m)) { /* "a b" */
            const char *s = json_string_value(m), *sp = strchr(s, ' ');
            if (!sp || strchr(sp + 1, ' ')) {
                st = tpar_err_set(err, TPAR_ERR_CORRUPT, "%s: %s: expected \"a b\"", path, where);
                goto done;
            }
            st = add_merge_str(tk, path, where, s, (size_t)(sp - s), sp + 1, strlen(sp + 1), err);
        } else if (json_is_array(m) && json_array_size(m) == 2 && json_is_string(json_array_get(m, 0)) &&
                   json_is_string(json_array_get(m, 1))) { /* ["a", "b"] (tokenizers >= 0.20) */
            json_t *a = json_array_get(m, 0), *b = json_array_get(m, 1);
            st = add_merge_str(tk, path, where, json_string_value(a), json_string_length(a), json_string_value(b),
                               json_string_length(b), err);
        } else {
            st = tpar_err_set(err, TPAR_ERR_CORRUPT, "%s: %s: expected \"a b\" or [\"a\", \"b\"]", path, where);
        }
        if (st != TPAR_OK) goto done;
    }
    json_t *added = json_object_get(root, "added_tokens");
    if (added && !json_is_null(added) && !json_is_array(added)) {
        st = tpar_err_set(err, TPAR_ERR_CORRUPT, "%s: added_tokens is not an array", path);
        goto done;
    }
    json_array_foreach(added, i, m) {
        json_t *id = json_object_get(m, "id"), *content = json_object_get(m, "content");
        snprintf(where, sizeof where, "added_tokens[%zu]", i);
        if (!json_is_integer(id) || !json_is_string(content)) {
            st = tpar_err_set(err, TPAR_ERR_CORRUPT, "%s: %s needs an integer id and a string content", path, where);
            goto done;
        }
        char w2[200];
        snprintf(w2, sizeof w2, "%s: %s", path, where);
        // Added tokens are raw text (not the byte-level alphabet), split out before pre-tokenizing.
        st = tok_add(tk, (const unsigned char *)json_string_value(content), json_string_length(content),
                     json_integer_value(id), 1, w2, err);
        if (st == TPAR_OK) st = tok_add_special(tk, (int32_t)json_integer_value(id), err);
        if (st != TPAR_OK) goto done;
    }
    if ((st = load_pretok(tk, path, root, err)) != TPAR_OK) goto done;
    tk->eos = tk->bos = -1;
    if (config) {
        if ((st = load_json(config, &cfg, err)) != TPAR_OK) goto done;
        if (!json_is_object(cfg)) {
            st = tpar_err_set(err, TPAR_ERR_CORRUPT, "%s: not a JSON object", config);
            goto done;
        }
        if ((st = config_token(tk, config, cfg, "bos_token", &tk->bos, err)) != TPAR_OK) goto done;
        if ((st = config_token(tk, config, cfg, "eos_token", &tk->eos, err)) != TPAR_OK) goto done;
    } else {
        tk->eos = tpar_tokenizer_lookup(tk, "<|endoftext|>", 13); /* GPT-2's convention, when present */
    }
    st = finish_desc(tk, path, err);
done:
    json_decref(root);
    json_decref(cfg);
    if (st != TPAR_OK) tpar_tokenizer_free(tk);
    else *out = tk;
    return st;
}

static int is_file(const char *p) {
    struct stat sb;
    return stat(p, &sb) == 0 && S_ISREG(sb.st_mode);
}

tpar_status tpar_tokenizer_load(const char *path, tpar_tokenizer_t **out, tpar_err_t *err) {
    if (!path || !out) return tpar_err_set(err, TPAR_ERR_INVALID_ARG, "tpar_tokenizer_load: NULL argument");
    struct stat sb;
    if (stat(path, &sb) != 0) return tpar_err_set(err, TPAR_ERR_IO, "tokenizer %s: %s", path, strerror(errno));
    char dir[4096], a[4200], b[4200];
    const char *base;
    if (S_ISDIR(sb.st_mode)) {
        snprintf(dir, sizeof dir, "%s", path);
        base = NULL;
    } else {
        const char *slash = strrchr(path, '/');
        snprintf(dir, sizeof dir, "%.*s", slash ? (int)(slash - path) : 1, slash ? path : ".");
        base = slash ? slash + 1 : path;
    }
    if (base && strstr(base, "encoder") && strstr(base, ".json")) { /* encoder.json, vocab.bpe beside it */
        snprintf(b, sizeof b, "%s/vocab.bpe", dir);
        return tpar_tokenizer_load_gpt2(path, b, out, err);
    }
    if (base) { /* a tokenizer.json */
        snprintf(b, sizeof b, "%s/tokenizer_config.json", dir);
        return tpar_tokenizer_load_hf(path, is_file(b) ? b : NULL, out, err);
    }
    snprintf(a, sizeof a, "%s/tokenizer.json", dir);
    if (is_file(a)) {
        snprintf(b, sizeof b, "%s/tokenizer_config.json", dir);
        return tpar_tokenizer_load_hf(a, is_file(b) ? b : NULL, out, err);
    }
    snprintf(a, sizeof a, "%s/encoder.json", dir);
    snprintf(b, sizeof b, "%s/vocab.bpe", dir);
    if (is_file(a)) return tpar_tokenizer_load_gpt2(a, b, out, err);
    return tpar_err_set(err, TPAR_ERR_IO, "tokenizer directory %s holds neither tokenizer.json nor encoder.json + vocab.bpe",
                        path);
}
