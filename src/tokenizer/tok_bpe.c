/* Byte-level BPE: the vocabulary and merge tables, pre-tokenization with PCRE2, merging by
 * rank with a heap (O(n log n) per piece, so a megabyte of spaces is no hang), a cache of
 * repeated pieces, encode and decode. Loading the files is tok_load.c. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tok_internal.h"

/* ---- hashing and growth ------------------------------------------------------------------- */

static uint64_t fnv1a(const unsigned char *s, size_t n) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) h = (h ^ s[i]) * 0x100000001b3ull;
    return h;
}

static uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Grows *p (of *cap elements of size el) to hold at least need elements. 0 or -1. */
static int grow(void **p, size_t *cap, size_t need, size_t el) {
    if (need <= *cap) return 0;
    size_t c = *cap ? *cap : 16;
    while (c < need) {
        if (c > SIZE_MAX / 2 / el) return -1;
        c *= 2;
    }
    void *q = realloc(*p, c * el);
    if (!q) return -1;
    *p = q;
    *cap = c;
    return 0;
}

tpar_status tok_new(tpar_tokenizer_t **out, tpar_err_t *err) {
    tpar_tokenizer_t *tk = calloc(1, sizeof *tk);
    if (!tk) return tpar_err_set(err, TPAR_ERR_NOMEM, "tokenizer: out of memory");
    tk->bos = tk->eos = -1;
    for (int b = 0; b < 256; b++) tk->byte_id[b] = -1;
    // Backtracking patterns on long pieces can outgrow the JIT's default 32 KiB stack; 16 MiB
    // at most, and past it a clear error (PCRE2_ERROR_JIT_STACKLIMIT), not a crash.
    tk->mctx = pcre2_match_context_create(NULL);
    tk->jstack = pcre2_jit_stack_create(32 * 1024, 16 * 1024 * 1024, NULL);
    if (!tk->mctx || !tk->jstack) {
        tpar_tokenizer_free(tk);
        return tpar_err_set(err, TPAR_ERR_NOMEM, "tokenizer: out of memory");
    }
    pcre2_jit_stack_assign(tk->mctx, NULL, tk->jstack);
    *out = tk;
    return TPAR_OK;
}

void tpar_tokenizer_free(tpar_tokenizer_t *tk) {
    if (!tk) return;
    for (int s = 0; s < tk->nstages; s++) {
        pcre2_match_data_free(tk->md[s]);
        pcre2_code_free(tk->re[s]);
    }
    pcre2_match_context_free(tk->mctx);
    pcre2_jit_stack_free(tk->jstack);
    free(tk->arena);
    free(tk->tok_off);
    free(tk->tok_len);
    free(tk->map);
    free(tk->pairs);
    free(tk->special);
    free(tk->cache);
    free(tk->ckeys);
    free(tk->cids);
    free(tk->sym);
    free(tk->prev);
    free(tk->next);
    free(tk->heap);
    free(tk);
}

/* ---- bytes -> id -------------------------------------------------------------------------- */

static tok_slot_t *map_find(const tpar_tokenizer_t *tk, const unsigned char *s, size_t len, uint64_t h) {
    if (!tk->map_cap) return NULL;
    size_t mask = tk->map_cap - 1;
    for (size_t i = (size_t)h & mask;; i = (i + 1) & mask) {
        tok_slot_t *e = &tk->map[i];
        if (e->id < 0) return e;
        if (e->h == h && e->len == len && memcmp(tk->arena + e->off, s, len) == 0) return e;
    }
}

static int map_grow(tpar_tokenizer_t *tk) {
    size_t cap = tk->map_cap ? tk->map_cap * 2 : 1024;
    tok_slot_t *old = tk->map, *m = malloc(cap * sizeof *m);
    if (!m) return -1;
    for (size_t i = 0; i < cap; i++) m[i].id = -1;
    size_t oldcap = tk->map_cap;
    tk->map = m;
    tk->map_cap = cap;
    for (size_t i = 0; i < oldcap; i++) {
        if (old[i].id < 0) continue;
        size_t j = (size_t)old[i].h & (cap - 1);
        while (m[j].id >= 0) j = (j + 1) & (cap - 1);
        m[j] = old[i];
    }
    free(old);
    return 0;
}

int32_t tpar_tokenizer_lookup(const tpar_tokenizer_t *tk, const void *s, size_t len) {
    if (!tk || (!s && len)) return -1;
    const tok_slot_t *e = map_find(tk, s, len, fnv1a(s, len));
    return e ? e->id : -1;
}

tpar_status tok_add(tpar_tokenizer_t *tk, const unsigned char *s, size_t len, int64_t id, int map_dup,
                    const char *where, tpar_err_t *err) {
    if (id < 0 || id >= TOK_MAX_ID)
        return tpar_err_set(err, TPAR_ERR_CORRUPT, "%s: id %lld is outside [0, %d)", where, (long long)id, TOK_MAX_ID);
    if (len == 0 || len > UINT32_MAX / 2)
        return tpar_err_set(err, TPAR_ERR_CORRUPT, "%s: a token of %zu bytes", where, len);
    if (id >= tk->vocab_cap) {
        size_t cap = (size_t)tk->vocab_cap, need = (size_t)id + 1, cap2 = cap;
        if (grow((void **)&tk->tok_off, &cap, need, sizeof *tk->tok_off) ||
            grow((void **)&tk->tok_len, &cap2, need, sizeof *tk->tok_len))
            return tpar_err_set(err, TPAR_ERR_NOMEM, "%s: out of memory", where);
        for (size_t i = (size_t)tk->vocab_cap; i < cap; i++) tk->tok_len[i] = UINT32_MAX;
        tk->vocab_cap = (int32_t)cap;
    }
    if (tk->tok_len[id] != UINT32_MAX) {
        if (map_dup && tk->tok_len[id] == len && memcmp(tk->arena + tk->tok_off[id], s, len) == 0)
            return TPAR_OK; /* an added token that repeats its vocabulary entry */
        return tpar_err_set(err, TPAR_ERR_CORRUPT, "%s: id %lld is given to two different tokens", where,
                            (long long)id);
    }
    if ((tk->map_n + 1) * 2 > tk->map_cap && map_grow(tk))
        return tpar_err_set(err, TPAR_ERR_NOMEM, "%s: out of memory", where);
    uint64_t h = fnv1a(s, len);
    tok_slot_t *e = map_find(tk, s, len, h);
    if (e->id >= 0 && !map_dup)
        return tpar_err_set(err, TPAR_ERR_CORRUPT, "%s: the same token has ids %d and %lld", where, e->id,
                            (long long)id);
    if (tk->arena_len > UINT32_MAX - len || grow((void **)&tk->arena, &tk->arena_cap, tk->arena_len + len, 1))
        return tpar_err_set(err, TPAR_ERR_NOMEM, "%s: out of memory for the vocabulary", where);
    memcpy(tk->arena + tk->arena_len, s, len);
    tk->tok_off[id] = (uint32_t)tk->arena_len;
    tk->tok_len[id] = (uint32_t)len;
    if (e->id < 0) {
        *e = (tok_slot_t){.h = h, .off = (uint32_t)tk->arena_len, .len = (uint32_t)len, .id = (int32_t)id};
        tk->map_n++;
    }
    tk->arena_len += len;
    if (id >= tk->nvocab) tk->nvocab = (int32_t)id + 1;
    return TPAR_OK;
}

/* ---- merges ------------------------------------------------------------------------------- */

static const tok_pair_t *pair_find(const tpar_tokenizer_t *tk, uint64_t key) {
    if (!tk->pairs_cap) return NULL;
    size_t mask = tk->pairs_cap - 1;
    for (size_t i = (size_t)mix64(key) & mask;; i = (i + 1) & mask) {
        const tok_pair_t *p = &tk->pairs[i];
        if (p->key == key) return p;
        if (p->key == UINT64_MAX) return NULL;
    }
}

tpar_status tok_add_merge(tpar_tokenizer_t *tk, int32_t left, int32_t right, int32_t merged, tpar_err_t *err) {
    if ((tk->nmerges + 1) * 2 > tk->pairs_cap) {
        size_t cap = tk->pairs_cap ? tk->pairs_cap * 2 : 4096;
        tok_pair_t *old = tk->pairs, *p = malloc(cap * sizeof *p);
        if (!p) return tpar_err_set(err, TPAR_ERR_NOMEM, "tokenizer: out of memory for the merges");
        for (size_t i = 0; i < cap; i++) p[i].key = UINT64_MAX;
        for (size_t i = 0; i < tk->pairs_cap; i++) {
            if (old[i].key == UINT64_MAX) continue;
            size_t j = (size_t)mix64(old[i].key) & (cap - 1);
            while (p[j].key != UINT64_MAX) j = (j + 1) & (cap - 1);
            p[j] = old[i];
        }
        free(old);
        tk->pairs = p;
        tk->pairs_cap = cap;
    }
    uint64_t key = (uint64_t)(uint32_t)left << 32 | (uint32_t)right;
    size_t mask = tk->pairs_cap - 1, i = (size_t)mix64(key) & mask;
    while (tk->pairs[i].key != UINT64_MAX) {
        if (tk->pairs[i].key == key) return TPAR_OK; /* the first (lowest) rank wins, as in HF */
        i = (i + 1) & mask;
    }
    tk->pairs[i] = (tok_pair_t){.key = key, .rank = (uint32_t)tk->nmerges, .merged = merged};
    tk->nmerges++;
    return TPAR_OK;
}

/* ---- pre-tokenizer and specials ----------------------------------------------------------- */

tpar_status tok_add_stage(tpar_tokenizer_t *tk, const char *pattern, const char *where, tpar_err_t *err) {
    if (tk->nstages == TOK_MAX_STAGES)
        return tpar_err_set(err, TPAR_ERR_UNSUPPORTED, "%s: more than %d regex pre-tokenizers", where,
                            TOK_MAX_STAGES);
    int ecode;
    PCRE2_SIZE eoff;
    // UTF + UCP: \p{L}, \s and friends are Unicode classes; MATCH_INVALID_UTF: text with
    // invalid UTF-8 still matches (the bad bytes fall between matches and become pieces).
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED,
                                   PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &ecode, &eoff, NULL);
    if (!re) {
        PCRE2_UCHAR msg[160];
        pcre2_get_error_message(ecode, msg, sizeof msg);
        return tpar_err_set(err, TPAR_ERR_CORRUPT, "%s: regular expression does not compile at offset %zu: %s",
                            where, (size_t)eoff, (const char *)msg);
    }
    pcre2_jit_compile(re, PCRE2_JIT_COMPLETE); /* without JIT (unsupported CPU) it still matches, slower */
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(re, NULL);
    if (!md) {
        pcre2_code_free(re);
        return tpar_err_set(err, TPAR_ERR_NOMEM, "%s: out of memory", where);
    }
    tk->re[tk->nstages] = re;
    tk->md[tk->nstages] = md;
    tk->nstages++;
    return TPAR_OK;
}

tpar_status tok_add_special(tpar_tokenizer_t *tk, int32_t id, tpar_err_t *err) {
    for (int i = 0; i < tk->nspecial; i++)
        if (tk->special[i] == id) return TPAR_OK;
    int32_t *s = realloc(tk->special, (size_t)(tk->nspecial + 1) * sizeof *s);
    if (!s) return tpar_err_set(err, TPAR_ERR_NOMEM, "tokenizer: out of memory");
    tk->special = s;
    tk->special[tk->nspecial++] = id;
    tk->special_first[tk->arena[tk->tok_off[id]]] = 1;
    return TPAR_OK;
}

tpar_status tok_finish(tpar_tokenizer_t *tk, const char *where, tpar_err_t *err) {
    for (int b = 0; b < 256; b++) {
        unsigned char c = (unsigned char)b;
        tk->byte_id[b] = tpar_tokenizer_lookup(tk, &c, 1);
        if (tk->byte_id[b] < 0)
            return tpar_err_set(err, TPAR_ERR_UNSUPPORTED,
                                "%s: the vocabulary has no token for byte 0x%02x; a byte-level BPE needs all 256",
                                where, b);
    }
    if (tk->nstages == 0) return tpar_err_set(err, TPAR_ERR_INTERNAL, "%s: no pre-tokenizer", where);
    tk->cache = calloc(TOK_CACHE_SLOTS, sizeof *tk->cache);
    if (!tk->cache) return tpar_err_set(err, TPAR_ERR_NOMEM, "%s: out of memory", where);
    return TPAR_OK;
}

void tpar_tokenizer_set_progress(tpar_tokenizer_t *tk, const tpar_progress_t *p, const char *what, uint64_t base,
                                 uint64_t total) {
    if (!tk) return;
    tk->progress = p ? *p : (tpar_progress_t){0};
    tk->prog_what = what ? what : "tokenizing";
    tk->prog_base = base;
    tk->prog_total = total;
}

/* ---- accessors ---------------------------------------------------------------------------- */

int tpar_tokenizer_vocab_size(const tpar_tokenizer_t *tk) { return tk ? tk->nvocab : 0; }
int32_t tpar_tokenizer_bos(const tpar_tokenizer_t *tk) { return tk ? tk->bos : -1; }
int32_t tpar_tokenizer_eos(const tpar_tokenizer_t *tk) { return tk ? tk->eos : -1; }
const char *tpar_tokenizer_describe(const tpar_tokenizer_t *tk) { return tk ? tk->desc : ""; }

const unsigned char *tpar_tokenizer_token(const tpar_tokenizer_t *tk, int32_t id, size_t *len) {
    if (!tk || id < 0 || id >= tk->nvocab || tk->tok_len[id] == UINT32_MAX) return NULL;
    if (len) *len = tk->tok_len[id];
    return tk->arena + tk->tok_off[id];
}

/* ---- BPE of one piece --------------------------------------------------------------------- */

/* A candidate merge of the symbol at pos with the one after it; stale once either changed. */
struct tok_heap_ent {
    uint32_t rank, pos;
    int32_t left, right;
};

static int heap_less(const struct tok_heap_ent *a, const struct tok_heap_ent *b) {
    return a->rank < b->rank || (a->rank == b->rank && a->pos < b->pos); /* leftmost first among equals */
}

static void heap_push(struct tok_heap_ent *h, size_t *n, struct tok_heap_ent e) {
    size_t i = (*n)++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!heap_less(&e, &h[p])) break;
        h[i] = h[p];
        i = p;
    }
    h[i] = e;
}

static struct tok_heap_ent heap_pop(struct tok_heap_ent *h, size_t *n) {
    struct tok_heap_ent top = h[0], last = h[--(*n)];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= *n) break;
        if (c + 1 < *n && heap_less(&h[c + 1], &h[c])) c++;
        if (!heap_less(&h[c], &last)) break;
        h[i] = h[c];
        i = c;
    }
    if (*n) h[i] = last;
    return top;
}

static void push_pair(const tpar_tokenizer_t *tk, struct tok_heap_ent *h, size_t *n, uint32_t pos, int32_t l,
                      int32_t r) {
    const tok_pair_t *p = pair_find(tk, (uint64_t)(uint32_t)l << 32 | (uint32_t)r);
    if (p) heap_push(h, n, (struct tok_heap_ent){p->rank, pos, l, r});
}

typedef struct {
    int32_t **ids;
    size_t *n, *cap;
} tok_out_t;

static int emit(tok_out_t *o, const int32_t *v, size_t k) {
    if (grow((void **)o->ids, o->cap, *o->n + k, sizeof **o->ids)) return -1;
    memcpy(*o->ids + *o->n, v, k * sizeof *v);
    *o->n += k;
    return 0;
}

static tpar_status cache_get(tpar_tokenizer_t *tk, const unsigned char *s, size_t len, uint64_t h, tok_out_t *o,
                             int *hit, tpar_err_t *err) {
    *hit = 0;
    size_t mask = TOK_CACHE_SLOTS - 1;
    for (size_t i = (size_t)h & mask;; i = (i + 1) & mask) {
        const tok_cache_t *c = &tk->cache[i];
        if (!c->klen) return TPAR_OK;
        if (c->h == h && c->klen == len && memcmp(tk->ckeys + c->koff, s, len) == 0) {
            *hit = 1;
            if (emit(o, tk->cids + c->ioff, c->nids)) return tpar_err_set(err, TPAR_ERR_NOMEM, "tokenizer: out of memory");
            return TPAR_OK;
        }
    }
}

static void cache_put(tpar_tokenizer_t *tk, const unsigned char *s, size_t len, uint64_t h, const int32_t *ids,
                      size_t k) {
    if (tk->cache_n + 1 > TOK_CACHE_SLOTS / 2) { /* full: start over rather than evict one by one */
        memset(tk->cache, 0, TOK_CACHE_SLOTS * sizeof *tk->cache);
        tk->cache_n = tk->ckeys_len = tk->cids_len = 0;
    }
    if (grow((void **)&tk->ckeys, &tk->ckeys_cap, tk->ckeys_len + len, 1) ||
        grow((void **)&tk->cids, &tk->cids_cap, tk->cids_len + k, sizeof *tk->cids))
        return; /* no room: simply not cached */
    size_t mask = TOK_CACHE_SLOTS - 1, i = (size_t)h & mask;
    while (tk->cache[i].klen) i = (i + 1) & mask;
    tk->cache[i] = (tok_cache_t){h, (uint32_t)tk->ckeys_len, (uint32_t)len, (uint32_t)tk->cids_len, (uint32_t)k};
    memcpy(tk->ckeys + tk->ckeys_len, s, len);
    memcpy(tk->cids + tk->cids_len, ids, k * sizeof *ids);
    tk->ckeys_len += len;
    tk->cids_len += k;
    tk->cache_n++;
}

static tpar_status bpe_piece(tpar_tokenizer_t *tk, const unsigned char *s, size_t len, tok_out_t *o,
                             tpar_err_t *err) {
    if (len == 0) return TPAR_OK;
    if (len > UINT32_MAX / 4) return tpar_err_set(err, TPAR_ERR_INVALID_ARG, "tokenizer: a piece of %zu bytes", len);
    if (tk->ignore_merges) { /* Llama 3: a piece that is a token is that token */
        int32_t id = tpar_tokenizer_lookup(tk, s, len);
        if (id >= 0) return emit(o, &id, 1) ? tpar_err_set(err, TPAR_ERR_NOMEM, "tokenizer: out of memory") : TPAR_OK;
    }
    if (len == 1) return emit(o, &tk->byte_id[s[0]], 1) ? tpar_err_set(err, TPAR_ERR_NOMEM, "tokenizer: out of memory") : TPAR_OK;
    uint64_t h = 0;
    int cacheable = len <= TOK_CACHE_MAX_PIECE;
    if (cacheable) {
        int hit;
        h = fnv1a(s, len);
        tpar_status st = cache_get(tk, s, len, h, o, &hit, err);
        if (st != TPAR_OK || hit) return st;
    }
    if (len > tk->scratch_cap) {
        size_t c = len > 2 * tk->scratch_cap ? len : 2 * tk->scratch_cap;
        int32_t *a = realloc(tk->sym, c * sizeof *a);
        if (a) tk->sym = a;
        int32_t *b = a ? realloc(tk->prev, c * sizeof *b) : NULL;
        if (b) tk->prev = b;
        int32_t *d = b ? realloc(tk->next, c * sizeof *d) : NULL;
        if (d) tk->next = d;
        struct tok_heap_ent *e = d ? realloc(tk->heap, 3 * c * sizeof *e) : NULL;
        if (!e) goto nomem;
        tk->heap = e;
        tk->scratch_cap = c;
    }
    int32_t *sym = tk->sym, *prev = tk->prev, *next = tk->next; // (len): symbols as a linked list
    struct tok_heap_ent *heap = tk->heap;                        // at most len-1 + 2 per merge entries
    size_t nh = 0;
    for (size_t i = 0; i < len; i++) {
        sym[i] = tk->byte_id[s[i]];
        prev[i] = (int32_t)i - 1;
        next[i] = i + 1 < len ? (int32_t)i + 1 : -1;
    }
    for (size_t i = 0; i + 1 < len; i++) push_pair(tk, heap, &nh, (uint32_t)i, sym[i], sym[i + 1]);
    while (nh) {
        struct tok_heap_ent e = heap_pop(heap, &nh);
        int32_t r = next[e.pos];
        if (sym[e.pos] != e.left || r < 0 || sym[r] != e.right) continue; /* stale */
        const tok_pair_t *p = pair_find(tk, (uint64_t)(uint32_t)e.left << 32 | (uint32_t)e.right);
        sym[e.pos] = p->merged;
        sym[r] = -1; /* dead */
        next[e.pos] = next[r];
        if (next[r] >= 0) prev[next[r]] = (int32_t)e.pos;
        if (prev[e.pos] >= 0) push_pair(tk, heap, &nh, (uint32_t)prev[e.pos], sym[prev[e.pos]], sym[e.pos]);
        if (next[e.pos] >= 0) push_pair(tk, heap, &nh, e.pos, sym[e.pos], sym[next[e.pos]]);
    }
    size_t start = *o->n;
    for (int32_t i = 0; i >= 0; i = next[i])
        if (emit(o, &sym[i], 1)) goto nomem;
    if (cacheable) cache_put(tk, s, len, h, *o->ids + start, *o->n - start);
    return TPAR_OK;
nomem:
    return tpar_err_set(err, TPAR_ERR_NOMEM, "tokenizer: out of memory for a piece of %zu bytes", len);
}

/* Splits s with stage `stage` and hands each piece (matches and the spans between them) on. */
static tpar_status split(tpar_tokenizer_t *tk, int stage, const unsigned char *s, size_t len, tok_out_t *o,
                         tpar_err_t *err) {
    if (stage >= tk->nstages || stage >= TOK_MAX_STAGES) return bpe_piece(tk, s, len, o, err);
    pcre2_code *re = tk->re[stage];
    pcre2_match_data *md = tk->md[stage];
    size_t at = 0;
    while (at < len) {
        // NOTEMPTY: an empty match would not advance; the text it skips becomes a piece instead.
        int rc = pcre2_match(re, s, len, at, PCRE2_NOTEMPTY, md, tk->mctx);
        size_t m0 = len, m1 = len;
        if (rc >= 0) {
            PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
            m0 = ov[0];
            m1 = ov[1];
        } else if (rc != PCRE2_ERROR_NOMATCH) {
            PCRE2_UCHAR msg[160];
            pcre2_get_error_message(rc, msg, sizeof msg);
            return tpar_err_set(err, TPAR_ERR_UNSUPPORTED,
                                "tokenizer: the pre-tokenizer's regular expression failed at byte %zu: %s (a piece "
                                "too long for this pattern?)", at, (const char *)msg);
        }
        if (stage == 0 && tk->progress.fn && (uint64_t)(s + m1 - tk->text0) >= tk->prog_next) {
            uint64_t done = (uint64_t)(s + m1 - tk->text0);
            tpar_progress_report(&tk->progress, tk->prog_what, tk->prog_base + done, tk->prog_total);
            tk->prog_next = done + (1u << 20);
        }
        tpar_status st = TPAR_OK;
        if (m0 > at) st = split(tk, stage + 1, s + at, m0 - at, o, err);
        if (st == TPAR_OK && m1 > m0) st = split(tk, stage + 1, s + m0, m1 - m0, o, err);
        if (st != TPAR_OK) return st;
        at = m1;
    }
    return TPAR_OK;
}

/* The longest special token starting at s (n bytes left), or -1. */
static int32_t special_at(const tpar_tokenizer_t *tk, const unsigned char *s, size_t n, size_t *mlen) {
    int32_t best = -1;
    size_t bl = 0;
    for (int i = 0; i < tk->nspecial; i++) {
        int32_t id = tk->special[i];
        size_t l = tk->tok_len[id];
        if (l <= n && l > bl && memcmp(tk->arena + tk->tok_off[id], s, l) == 0) best = id, bl = l;
    }
    *mlen = bl;
    return best;
}

static tpar_status encode_text(tpar_tokenizer_t *tk, const unsigned char *s, size_t len, tok_out_t *o,
                               tpar_err_t *err) {
    if (!tk->add_prefix_space || len == 0 || s[0] == ' ') return split(tk, 0, s, len, o, err);
    unsigned char *t = malloc(len + 1); /* ByteLevel add_prefix_space: " " + text */
    if (!t) return tpar_err_set(err, TPAR_ERR_NOMEM, "tokenizer: out of memory");
    t[0] = ' ';
    memcpy(t + 1, s, len);
    tpar_progress_t keep = tk->progress; /* offsets into the copy are not the caller's */
    tk->progress.fn = NULL;
    tpar_status st = split(tk, 0, t, len + 1, o, err);
    tk->progress = keep;
    free(t);
    return st;
}

tpar_status tpar_tokenizer_encode(tpar_tokenizer_t *tk, const void *text, size_t len, int flags, int32_t **ids,
                                  size_t *n, size_t *cap, tpar_err_t *err) {
    if (!tk || (!text && len) || !ids || !n || !cap || *n > *cap)
        return tpar_err_set(err, TPAR_ERR_INVALID_ARG, "tpar_tokenizer_encode: NULL or inconsistent argument");
    const unsigned char *s = text;
    tok_out_t o = {ids, n, cap};
    tk->text0 = s;
    tk->prog_next = 1u << 20;
    if (!(flags & TPAR_TOK_SPECIAL) || tk->nspecial == 0) return encode_text(tk, s, len, &o, err);
    size_t from = 0;
    for (size_t i = 0; i < len; i++) {
        if (!tk->special_first[s[i]]) continue;
        size_t ml;
        int32_t id = special_at(tk, s + i, len - i, &ml);
        if (id < 0) continue;
        tpar_status st = encode_text(tk, s + from, i - from, &o, err);
        if (st != TPAR_OK) return st;
        if (emit(&o, &id, 1)) return tpar_err_set(err, TPAR_ERR_NOMEM, "tokenizer: out of memory");
        i += ml - 1;
        from = i + 1;
    }
    return encode_text(tk, s + from, len - from, &o, err);
}

tpar_status tpar_tokenizer_decode(const tpar_tokenizer_t *tk, const int32_t *ids, size_t n, char **out,
                                  size_t *len, tpar_err_t *err) {
    if (!tk || (!ids && n) || !out || !len)
        return tpar_err_set(err, TPAR_ERR_INVALID_ARG, "tpar_tokenizer_decode: NULL argument");
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= tk->nvocab || tk->tok_len[ids[i]] == UINT32_MAX)
            return tpar_err_set(err, TPAR_ERR_INVALID_ARG,
                                "tokenizer: id %d at position %zu is not in the vocabulary (size %d)", (int)ids[i], i,
                                tk->nvocab);
        total += tk->tok_len[ids[i]];
    }
    char *b = malloc(total + 1);
    if (!b) return tpar_err_set(err, TPAR_ERR_NOMEM, "tokenizer: out of memory decoding %zu tokens", n);
    size_t at = 0;
    for (size_t i = 0; i < n; i++) {
        memcpy(b + at, tk->arena + tk->tok_off[ids[i]], tk->tok_len[ids[i]]);
        at += tk->tok_len[ids[i]];
    }
    b[at] = '\0';
    *out = b;
    *len = at;
    return TPAR_OK;
}

/* ---- GPT-2's byte-level alphabet ---------------------------------------------------------- */

/* bytes_to_unicode: printable bytes (33-126, 161-172, 174-255) stand for themselves, the other
 * 68 (0-32, 127-160, 173) take code points 256, 257, ... in byte order. The inverse: */
static int unicode_to_byte(uint32_t cp) {
    if (cp < 256) return ((cp >= 33 && cp <= 126) || (cp >= 161 && cp <= 172) || cp >= 174) ? (int)cp : -1;
    if (cp < 256 + 33) return (int)(cp - 256);                /* bytes 0-32 */
    if (cp < 256 + 67) return (int)(cp - 256 - 33 + 127);     /* bytes 127-160 */
    return cp == 256 + 67 ? 173 : -1;
}

long tok_bytelevel_decode(const char *str, size_t len, unsigned char *out) {
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0, k = 0;
    while (i < len) {
        uint32_t cp;
        if (s[i] < 0x80) cp = s[i++];
        else if ((s[i] & 0xe0) == 0xc0 && i + 1 < len && (s[i + 1] & 0xc0) == 0x80) {
            cp = (uint32_t)(s[i] & 0x1f) << 6 | (s[i + 1] & 0x3f);
            i += 2;
        } else return -1; /* every code point of the alphabet is below 0x800 */
        int b = unicode_to_byte(cp);
        if (b < 0) return -1;
        out[k++] = (unsigned char)b;
    }
    return (long)k;
}
