/* Internals of the tokenizer module shared by its sources (not part of the public API). */
#ifndef TPAR_TOK_INTERNAL_H
#define TPAR_TOK_INTERNAL_H

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stddef.h>
#include <stdint.h>

#include "tpar/tokenizer.h"

enum {
    TOK_MAX_STAGES = 4,         /* regex splitters applied one after the other */
    TOK_MAX_ID = 1 << 24,       /* ids above this are refused: no real vocabulary is that large */
    TOK_CACHE_SLOTS = 1 << 16,  /* cached pieces (power of two); reset when half full */
    TOK_CACHE_MAX_PIECE = 64,   /* longer pieces are rare and not cached */
};

/* bytes -> id (open addressing; key bytes live in the arena at off, len). */
typedef struct {
    uint64_t h;
    uint32_t off, len;
    int32_t id; /* -1: empty slot */
} tok_slot_t;

/* (left id, right id) -> rank and merged id. */
typedef struct {
    uint64_t key; /* left << 32 | right; UINT64_MAX: empty slot */
    uint32_t rank;
    int32_t merged;
} tok_pair_t;

/* A cached piece: its bytes and its ids, in the cache's own arenas. */
typedef struct {
    uint64_t h;
    uint32_t koff, klen, ioff, nids; /* klen 0: empty slot */
} tok_cache_t;

struct tpar_tokenizer {
    /* vocabulary: token id -> bytes in arena; tok_len[id] == UINT32_MAX for a hole */
    unsigned char *arena;
    size_t arena_len, arena_cap;
    uint32_t *tok_off, *tok_len;
    int32_t nvocab, vocab_cap;
    tok_slot_t *map;
    size_t map_cap, map_n;
    int32_t byte_id[256]; /* the token of each single byte */
    /* merges */
    tok_pair_t *pairs;
    size_t pairs_cap, nmerges;
    int ignore_merges; /* a piece that is itself a token is emitted whole (Llama 3) */
    /* special / added tokens, split out of the text under TPAR_TOK_SPECIAL */
    int32_t *special;
    int nspecial;
    unsigned char special_first[256];
    int32_t bos, eos;
    /* pre-tokenizer: regex stages, each applied to the pieces of the previous one */
    int nstages;
    pcre2_code *re[TOK_MAX_STAGES];
    pcre2_match_data *md[TOK_MAX_STAGES];
    pcre2_match_context *mctx; /* with a JIT stack larger than PCRE2's 32 KiB default */
    pcre2_jit_stack *jstack;
    int add_prefix_space;
    /* cache of repeated pieces */
    tok_cache_t *cache;
    size_t cache_n;
    unsigned char *ckeys;
    size_t ckeys_len, ckeys_cap;
    int32_t *cids;
    size_t cids_len, cids_cap;
    /* BPE scratch, grown to the longest piece */
    int32_t *sym, *prev, *next;
    struct tok_heap_ent *heap;
    size_t scratch_cap;
    /* progress of encode (tpar_tokenizer_set_progress) */
    tpar_progress_t progress;
    const char *prog_what;
    uint64_t prog_base, prog_total, prog_next;
    const unsigned char *text0; /* start of the text of the current encode call */
    char desc[512];
};

/* Creation and tables (tok_bpe.c). */
tpar_status tok_new(tpar_tokenizer_t **out, tpar_err_t *err);
/* Gives id the bytes s[0..len); also maps bytes -> id unless other bytes already do (added
 * tokens equal to a vocabulary token). TPAR_ERR_CORRUPT when the id already has bytes or the
 * bytes another id (for vocabulary tokens, map_dup = 0). */
tpar_status tok_add(tpar_tokenizer_t *tk, const unsigned char *s, size_t len, int64_t id, int map_dup,
                    const char *where, tpar_err_t *err);
/* Records merge (left, right) -> merged with the next rank; a duplicate pair keeps its first rank. */
tpar_status tok_add_merge(tpar_tokenizer_t *tk, int32_t left, int32_t right, int32_t merged, tpar_err_t *err);
/* Compiles one pre-tokenizer stage. */
tpar_status tok_add_stage(tpar_tokenizer_t *tk, const char *pattern, const char *where, tpar_err_t *err);
/* After loading: every byte has a token (byte_id), specials are indexed. */
tpar_status tok_finish(tpar_tokenizer_t *tk, const char *where, tpar_err_t *err);
tpar_status tok_add_special(tpar_tokenizer_t *tk, int32_t id, tpar_err_t *err);

/* GPT-2's byte-level alphabet: a token string (UTF-8, each code point one byte) -> bytes.
 * out needs len bytes; returns the byte count or -1 when a code point is not in the alphabet
 * or the UTF-8 is malformed. */
long tok_bytelevel_decode(const char *s, size_t len, unsigned char *out);

#endif /* TPAR_TOK_INTERNAL_H */
