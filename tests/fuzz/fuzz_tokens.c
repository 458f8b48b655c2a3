/* libFuzzer target: tpar_tokens_load on arbitrary bytes (binary token files by their magic,
 * else text), then the split and a data loader over what loaded. */
#include "fuzz_util.h"
#include "tpar/io.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_file("t.bin", data, size);
    tpar_tokens_t all, train, val;
    tpar_err_t err = {0};
    if (tpar_tokens_load(path, &all, &err) != TPAR_OK) return 0;
    for (size_t i = 0; i < all.n; i++)
        if (all.data[i] < 0 || all.data[i] >= all.vocab) abort(); /* promised: every token in the vocabulary */
    if (tpar_tokens_split(&all, 0.25, &train, &val, &err) == TPAR_OK) {
        tpar_loader_t L;
        if (tpar_loader_init(&L, &train, 2, 3, 0, 1, 1, 7, 1, &err) == TPAR_OK) {
            int32_t in[6], tg[6];
            for (int k = 0; k < 3; k++) {
                if (tpar_loader_batch(&L, 0, in, tg, &err) != TPAR_OK) abort();
                tpar_loader_advance(&L);
            }
            tpar_loader_free(&L);
        }
    }
    tpar_tokens_free(&all);
    return 0;
}
