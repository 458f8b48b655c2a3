/* tpar tokenizer: byte-level BPE, as GPT-2, Llama 3, SmolLM and Qwen use it.
 *
 * A tokenizer comes from a Hugging Face tokenizer.json (model.type "BPE" with a byte-level
 * pre-tokenizer), with tokenizer_config.json beside it for BOS/EOS, or from GPT-2's
 * encoder.json + vocab.bpe. Encoding: special tokens split out first (when asked), then the
 * pre-tokenizer's regular expression (PCRE2, Unicode classes, JIT) cuts the text into pieces,
 * and each piece's bytes are merged by rank into tokens; a cache remembers repeated pieces.
 * Decoding gives back the exact bytes, invalid UTF-8 included. See docs/TOKENIZER.md.
 *
 * A tokenizer is not thread-safe (encoding fills its cache): one per thread. */
#ifndef TPAR_TOKENIZER_H
#define TPAR_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "tpar/core.h"

typedef struct tpar_tokenizer tpar_tokenizer_t;

/* The pre-tokenizer pattern of GPT-2 (also the default of a ByteLevel pre-tokenizer). */
#define TPAR_TOK_GPT2_PATTERN "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+"

/* Loads from path, which is one of:
 *   - a directory holding tokenizer.json (and optionally tokenizer_config.json), or else
 *     encoder.json and vocab.bpe;
 *   - a tokenizer.json file (tokenizer_config.json beside it is read when present);
 *   - an encoder.json file (vocab.bpe beside it).
 * A malformed file, a missing field or an unsupported model / pre-tokenizer is an error naming
 * the file and the field (TPAR_ERR_IO, TPAR_ERR_CORRUPT, TPAR_ERR_UNSUPPORTED). */
TPAR_API tpar_status tpar_tokenizer_load(const char *path, tpar_tokenizer_t **out, tpar_err_t *err);
/* The same from explicit files. config (may be NULL) is a tokenizer_config.json. */
TPAR_API tpar_status tpar_tokenizer_load_hf(const char *tokenizer_json, const char *config, tpar_tokenizer_t **out,
                                            tpar_err_t *err);
TPAR_API tpar_status tpar_tokenizer_load_gpt2(const char *encoder_json, const char *vocab_bpe, tpar_tokenizer_t **out,
                                              tpar_err_t *err);
TPAR_API void tpar_tokenizer_free(tpar_tokenizer_t *tk); /* NULL is fine */

/* Ids are in [0, vocab size); a vocabulary may leave holes (ids no token has). */
TPAR_API int tpar_tokenizer_vocab_size(const tpar_tokenizer_t *tk);
TPAR_API int32_t tpar_tokenizer_bos(const tpar_tokenizer_t *tk); /* -1 when there is none */
TPAR_API int32_t tpar_tokenizer_eos(const tpar_tokenizer_t *tk); /* -1 when there is none */
/* The bytes of token id (*len of them; not NUL-terminated), or NULL for an id no token has. */
TPAR_API const unsigned char *tpar_tokenizer_token(const tpar_tokenizer_t *tk, int32_t id, size_t *len);
/* The id of the token whose bytes are s[0..len), or -1. */
TPAR_API int32_t tpar_tokenizer_lookup(const tpar_tokenizer_t *tk, const void *s, size_t len);

/* Encode flags. */
enum {
    /* Recognise special / added tokens ("<|endoftext|>") in the text; without it their text
     * is encoded as ordinary bytes, as tiktoken's encode_ordinary does. */
    TPAR_TOK_SPECIAL = 1,
};

/* Encodes len bytes of text (any bytes; invalid UTF-8 is kept, byte by byte) and appends the
 * ids to *ids, a malloc'd buffer of *cap ids holding *n (NULL / 0 / 0 to start), growing it.
 * TPAR_ERR_NOMEM leaves the ids so far in place. */
TPAR_API tpar_status tpar_tokenizer_encode(tpar_tokenizer_t *tk, const void *text, size_t len, int flags, int32_t **ids,
                                           size_t *n, size_t *cap, tpar_err_t *err);
/* Progress of the next encode calls: every MiB of text, p (copied; NULL stops reporting)
 * gets what, base + the bytes of the current call done so far, and total. */
TPAR_API void tpar_tokenizer_set_progress(tpar_tokenizer_t *tk, const tpar_progress_t *p, const char *what, uint64_t base,
                                          uint64_t total);

/* Decodes n ids into a malloc'd buffer (*out, *len bytes, NUL-terminated for convenience).
 * An id outside the vocabulary is TPAR_ERR_INVALID_ARG naming its position. */
TPAR_API tpar_status tpar_tokenizer_decode(const tpar_tokenizer_t *tk, const int32_t *ids, size_t n, char **out,
                                           size_t *len, tpar_err_t *err);

/* A one-line description: "byte-level BPE, 50257 tokens, 50000 merges, from DIR/encoder.json". */
TPAR_API const char *tpar_tokenizer_describe(const tpar_tokenizer_t *tk);

#endif /* TPAR_TOKENIZER_H */
