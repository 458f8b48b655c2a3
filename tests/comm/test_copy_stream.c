/* tpar_copy_stream (the shm backend's staging copy with streaming stores) against memcpy:
 * every source and destination alignment within 16 bytes, lengths around the 16-byte store
 * and the 64-byte loop boundaries, and nothing written outside the destination. */
#include <stdint.h>

#include "check.h"
#include "comm/comm_internal.h"

int main(void) {
    enum { PAD = 64, MAXN = 4096 + 67 };
    static const size_t lens[] = {0, 1, 15, 16, 17, 63, 64, 65, 127, 128, 1000, MAXN};
    static uint8_t src[MAXN + 2 * PAD], dst[MAXN + 2 * PAD], want[MAXN + 2 * PAD];
    for (size_t i = 0; i < sizeof src; i++) src[i] = (uint8_t)(i * 131u + 7u);
    for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++)
        for (size_t so = 0; so < 16; so++)
            for (size_t d0 = 0; d0 < 16; d0++) {
                size_t n = lens[li];
                memset(dst, 0xEE, sizeof dst);
                memcpy(want, dst, sizeof want);
                memcpy(want + PAD + d0, src + so, n);
                tpar_copy_stream(dst + PAD + d0, src + so, n);
                if (!CHECK(memcmp(dst, want, sizeof dst) == 0)) /* memcpy's bytes, and only there */
                    fprintf(stderr, "  length %zu, source offset %zu, destination offset %zu\n", n, so, d0);
            }
    return check_finish("test_copy_stream");
}
