/* Models for inference: find the weights (checkpoint or preset) and build this rank's shards. */
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "tpar/infer.h"
#include "tpar/io.h"

tpar_status tpar_infer_resolve(const tpar_model_source_t *src, int full, char *path, size_t cap,
                               tpar_gpt2_config_t *cfg, tpar_ckpt_found_t *found_out, tpar_err_t *err) {
    memset(cfg, 0, sizeof *cfg);
    if (found_out) memset(found_out, 0, sizeof *found_out);
    if (cap) path[0] = 0;
    if (!src->ckpt) return tpar_gpt2_preset(src->preset, cfg, err);
    struct stat sb;
    if (stat(src->ckpt, &sb))
        return tpar_err_set(err, TPAR_ERR_IO, "checkpoint '%s' not found (hint: --ckpt the --save-dir of `tpar train`)",
                            src->ckpt);
    int n;
    if (S_ISREG(sb.st_mode)) { // a weights file itself
        n = snprintf(path, cap, "%s", src->ckpt);
    } else {
        tpar_ckpt_found_t found;
        tpar_status st = tpar_ckpt_find_latest(src->ckpt, full, &found, err);
        if (st) return st;
        if (!found.found)
            return tpar_err_set(err, TPAR_ERR_IO,
                                "no checkpoint in '%s' (expected step_N directories written by `tpar train --save-dir`)",
                                src->ckpt);
        n = snprintf(path, cap, "%s/model.safetensors", found.path);
        if (found_out) *found_out = found;
    }
    if (n < 0 || (size_t)n >= cap) return tpar_err_set(err, TPAR_ERR_INVALID_ARG, "checkpoint path too long: %s", src->ckpt);
    return tpar_gpt2_read_config(path, cfg, err);
}

tpar_status tpar_infer_load_model(const tpar_model_source_t *src, tpar_comm_t *tp_comm, int T, tpar_gpt2_t **out,
                                  tpar_ckpt_found_t *found, tpar_err_t *err) {
    *out = NULL;
    char path[TPAR_CKPT_PATH_MAX + 32];
    tpar_gpt2_config_t cfg;
    tpar_status st = tpar_infer_resolve(src, 1, path, sizeof path, &cfg, found, err);
    if (st || (st = tpar_gpt2_new(&cfg, tp_comm, 1, T, 0, out, err))) return st;
    if (!src->ckpt) {
        tpar_gpt2_init(*out, src->init_seed);
        return TPAR_OK;
    }
    float *bufs[1] = {(*out)->params};
    const char *suffix[1] = {""};
    (*out)->progress = src->progress;
    if ((st = tpar_gpt2_load(*out, 1, bufs, suffix, path, err))) {
        tpar_gpt2_free(*out);
        *out = NULL;
    }
    return st;
}
