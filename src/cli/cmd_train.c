/* `tpar train`: train a GPT split across a TP x DP grid of ranks. Started by hand it checks the
 * options, then re-executes itself under `tpar launch -n tp*dp`; as a rank (TPAR_RANK set, or
 * under mpirun) it runs the loop of src/train. */
#define _POSIX_C_SOURCE 200809L /* setenv */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "tpar/fault.h"
#include "tpar/io.h"
#include "tpar/train.h"

static void usage(FILE *f) {
    tpar_train_config_t d;
    tpar_train_config_default(&d);
    fprintf(f,
            "usage: tpar train [options]\n\n"
            "Train a GPT-2 model with tensor (--tp) x data (--dp) parallelism on a text or token file.\n"
            "Starts tp*dp ranks itself (through `tpar launch`) unless it already runs as a rank.\n\n"
            "model and layout:\n"
            "  --model NAME        preset: %s (default %s)\n"
            "  --tp N, --dp N      tensor- and data-parallel sizes (default 1, 1)\n"
            "  --sp                sequence parallelism: the TP ranks split the residual stream along the\n"
            "                      tokens (needs batch*seq divisible by --tp; same results, less memory)\n"
            "  --allow-tp-across-hosts  run even when a TP group's ranks are on different hosts (under\n"
            "                      mpirun; refused by default: TP all-reduces in every layer, docs/HOSTS.md)\n"
            "  --dropout P         dropout probability (default 0)\n"
            "batch and schedule:\n"
            "  --batch B           sequences per micro-batch per DP rank (default %d)\n"
            "  --seq T             tokens per sequence (default %d)\n"
            "  --accum K           micro-batches per step, gradient accumulation (default %d)\n"
            "  --steps N           optimizer steps in all (default %d)\n"
            "  --lr LR             peak learning rate (default %g); --warmup STEPS (default %d), then cosine\n"
            "                      decay to a tenth\n"
            "  --weight-decay WD   AdamW decay of matrices (default %g); --grad-clip NORM (default %g, 0: off)\n"
            "  --seed S            initialisation, data order and dropout (default %llu)\n"
            "data and output:\n"
            "  --data FILE         text (bytes) or binary token file (default %s); the last 10%% is validation\n"
            "  --val-every K       validation every K steps (default %d); --val-batches N (default %d)\n"
            "  --metrics FILE      JSON lines, one per step (appended to); the first of each start also\n"
            "                      holds the run's header (run.*: layout, model, command, machine)\n"
            "  --report FILE       rewrite FILE, an HTML page of charts (`tpar report`), at each\n"
            "                      validation (needs --metrics); reload it in a browser to follow the run\n"
            "  --log-every K       print every K-th step (default 1)\n"
            "  --on-nonfinite A    a step with a NaN/Inf loss or gradient: stop (default; an error naming\n"
            "                      the step and the first non-finite tensor, nothing saved) or skip (its\n"
            "                      update is skipped and counted in skipped_steps of the metrics)\n"
            "  --sample N          print N sampled bytes at the end (default 0); --temperature X (default %g)\n"
            "checkpoints:\n"
            "  --save-dir DIR      save DIR/step_N at the end and every --save-every K steps; DIR is\n"
            "                      locked for the run (DIR/tpar.lock): a second job on it fails at once\n"
            "  --keep N            checkpoints kept (default %d, 0: all)\n"
            "  --resume            continue from the newest valid checkpoint in --save-dir (any layout)\n"
            "  --max-restarts N    when a rank fails, stop all, report and restart them from the newest\n"
            "                      complete checkpoint, up to N times (default 0; docs/FAULTS.md)\n",
            TPAR_GPT2_PRESETS, d.model, d.batch, d.seq, d.accum, d.steps, d.lr, d.warmup, d.weight_decay, d.grad_clip,
            (unsigned long long)d.seed, d.data, d.val_every, d.val_batches, d.temperature, d.keep);
}

enum {
    O_MODEL = 256, O_TP, O_DP, O_BATCH, O_SEQ, O_ACCUM, O_STEPS, O_SEED, O_LR, O_WARMUP, O_WD, O_CLIP, O_DATA,
    O_VAL_EVERY, O_VAL_BATCHES, O_METRICS, O_SAVE_DIR, O_SAVE_EVERY, O_KEEP, O_RESUME, O_DROPOUT, O_SAMPLE,
    O_TEMP, O_LOG_EVERY, O_MAX_RESTARTS, O_SP, O_REPORT, O_NONFINITE, O_TP_HOSTS
};

/* The command line as typed, for the metrics header: words with spaces or quotes are quoted. */
static char *command_line(int argc, char **argv) {
    size_t n = 16;
    for (int i = 0; i < argc; i++) n += 3 + 4 * strlen(argv[i]); // a quote becomes four characters
    char *s = malloc(n), *p = s;
    if (!s) return NULL;
    p += sprintf(p, "tpar");
    for (int i = 0; i < argc; i++) {
        int q = argv[i][0] == 0 || strpbrk(argv[i], " \t'\"\\$`") != NULL;
        *p++ = ' ';
        if (q) *p++ = '\'';
        for (const char *a = argv[i]; *a; a++) {
            if (q && *a == '\'') p += sprintf(p, "'\\''");
            else *p++ = *a;
        }
        if (q) *p++ = '\'';
    }
    *p = 0;
    return s;
}

int tpar_cmd_train(int argc, char **argv) {
    static const struct option opts[] = {
        {"model", required_argument, 0, O_MODEL},       {"tp", required_argument, 0, O_TP},
        {"dp", required_argument, 0, O_DP},             {"batch", required_argument, 0, O_BATCH},
        {"seq", required_argument, 0, O_SEQ},           {"accum", required_argument, 0, O_ACCUM},
        {"steps", required_argument, 0, O_STEPS},       {"seed", required_argument, 0, O_SEED},
        {"lr", required_argument, 0, O_LR},             {"warmup", required_argument, 0, O_WARMUP},
        {"weight-decay", required_argument, 0, O_WD},   {"grad-clip", required_argument, 0, O_CLIP},
        {"data", required_argument, 0, O_DATA},         {"val-every", required_argument, 0, O_VAL_EVERY},
        {"val-batches", required_argument, 0, O_VAL_BATCHES}, {"metrics", required_argument, 0, O_METRICS},
        {"save-dir", required_argument, 0, O_SAVE_DIR}, {"save-every", required_argument, 0, O_SAVE_EVERY},
        {"keep", required_argument, 0, O_KEEP},         {"resume", no_argument, 0, O_RESUME},
        {"sp", no_argument, 0, O_SP},                   {"allow-tp-across-hosts", no_argument, 0, O_TP_HOSTS},
        {"dropout", required_argument, 0, O_DROPOUT},   {"sample", required_argument, 0, O_SAMPLE},
        {"temperature", required_argument, 0, O_TEMP},  {"log-every", required_argument, 0, O_LOG_EVERY},
        {"max-restarts", required_argument, 0, O_MAX_RESTARTS}, {"report", required_argument, 0, O_REPORT},
        {"on-nonfinite", required_argument, 0, O_NONFINITE},
        {"help", no_argument, 0, 'h'},                  {0, 0, 0, 0}};
    tpar_train_config_t c;
    tpar_train_config_default(&c);
    const char *cmd = "train";
    int ch;
    long long v, restarts = -1;
    double x;
    optind = 1;
    while ((ch = tpar_cli_getopt(cmd, argc, argv, "h", opts)) != -1) {
        const char *a = optarg;
        int bad = 0;
        switch (ch) {
        case 'h': usage(stdout); return TPAR_EXIT_OK;
        case O_MODEL: c.model = a; break;
        case O_DATA: c.data = a; break;
        case O_METRICS: c.metrics = a; break;
        case O_REPORT: c.report = a; break;
        case O_SAVE_DIR: c.save_dir = a; break;
        case O_RESUME: c.resume = 1; break;
        case O_SP: c.sp = 1; break;
        case O_TP_HOSTS: c.allow_tp_across_hosts = 1; break;
        case O_NONFINITE:
            if (!strcmp(a, "stop") || !strcmp(a, "skip")) {
                c.nonfinite_skip = !strcmp(a, "skip");
            } else {
                tpar_cli_error(cmd, "--on-nonfinite expects stop or skip, got '%s'", a);
                bad = 1;
            }
            break;
        case O_TP: bad = tpar_cli_int(cmd, "--tp", a, 1, 4096, &v), c.tp = (int)v; break;
        case O_DP: bad = tpar_cli_int(cmd, "--dp", a, 1, 4096, &v), c.dp = (int)v; break;
        case O_BATCH: bad = tpar_cli_int(cmd, "--batch", a, 1, 1 << 20, &v), c.batch = (int)v; break;
        case O_SEQ: bad = tpar_cli_int(cmd, "--seq", a, 1, 1 << 20, &v), c.seq = (int)v; break;
        case O_ACCUM: bad = tpar_cli_int(cmd, "--accum", a, 1, 1 << 20, &v), c.accum = (int)v; break;
        case O_STEPS: bad = tpar_cli_int(cmd, "--steps", a, 0, 1000000000, &v), c.steps = (int)v; break;
        case O_SEED: bad = tpar_cli_int(cmd, "--seed", a, 0, LLONG_MAX, &v), c.seed = (uint64_t)v; break;
        case O_WARMUP: bad = tpar_cli_int(cmd, "--warmup", a, 0, 1000000000, &v), c.warmup = (int)v; break;
        case O_VAL_EVERY: bad = tpar_cli_int(cmd, "--val-every", a, 0, 1000000000, &v), c.val_every = (int)v; break;
        case O_VAL_BATCHES: bad = tpar_cli_int(cmd, "--val-batches", a, 1, 1 << 20, &v), c.val_batches = (int)v; break;
        case O_SAVE_EVERY: bad = tpar_cli_int(cmd, "--save-every", a, 0, 1000000000, &v), c.save_every = (int)v; break;
        case O_KEEP: bad = tpar_cli_int(cmd, "--keep", a, 0, 1000000, &v), c.keep = (int)v; break;
        case O_SAMPLE: bad = tpar_cli_int(cmd, "--sample", a, 0, 1 << 20, &v), c.sample = (int)v; break;
        case O_MAX_RESTARTS: bad = tpar_cli_int(cmd, "--max-restarts", a, 0, 1000000, &restarts); break;
        case O_LOG_EVERY: bad = tpar_cli_int(cmd, "--log-every", a, 1, 1000000000, &v), c.log_every = (int)v; break;
        case O_LR: bad = tpar_cli_double(cmd, "--lr", a, 0, 10, &c.lr); break;
        case O_WD: bad = tpar_cli_double(cmd, "--weight-decay", a, 0, 10, &c.weight_decay); break;
        case O_CLIP: bad = tpar_cli_double(cmd, "--grad-clip", a, 0, 1e9, &c.grad_clip); break;
        case O_TEMP: bad = tpar_cli_double(cmd, "--temperature", a, 0, 100, &c.temperature); break;
        case O_DROPOUT: bad = tpar_cli_double(cmd, "--dropout", a, 0, 0.999, &x), c.dropout = (float)x; break;
        default: return TPAR_EXIT_USAGE;
        }
        if (bad) return TPAR_EXIT_USAGE;
    }
    if (optind < argc) {
        tpar_cli_error(cmd, "unexpected argument '%s'", argv[optind]);
        return TPAR_EXIT_USAGE;
    }
    tpar_err_t err = {0};
    int rank = tpar_cli_is_rank();
    // Checked before any rank starts; a rank checks again against the real world size.
    if (!rank && (tpar_train_validate(&c, -1, &err) || tpar_fault_check_env(&err))) {
        tpar_cli_error(cmd, "%s", err.msg);
        return TPAR_EXIT_USAGE;
    }
    // One job per save directory: when it starts ranks, this process takes the lock before any
    // of them and keeps it for the job's life: it execs into the launcher (same process, the
    // descriptor survives exec), which holds it across restarts; the ranks find the descriptor in
    // TPAR_SAVE_DIR_LOCK_FD (rank 0 checks it) and close it. The kernel drops the lock when the
    // launcher is gone, kill -9 included. Run in this process, the rank takes it itself.
    // Several ranks, or restarts asked for: the launcher supervises (reports failures, restarts).
    if (!rank && (c.tp * c.dp > 1 || restarts >= 0)) {
        tpar_ckpt_lock_t *lock = NULL; // held until this process (the launcher after exec) exits
        char fdbuf[16];
        if (c.save_dir && tpar_ckpt_lock(c.save_dir, -1, 1, &lock, &err)) {
            tpar_cli_error(cmd, "%s", err.msg);
            return TPAR_EXIT_FAIL;
        }
        snprintf(fdbuf, sizeof fdbuf, "%d", tpar_ckpt_lock_fd(lock));
        if (lock && setenv("TPAR_SAVE_DIR_LOCK_FD", fdbuf, 1)) {
            tpar_cli_error(cmd, "setenv: out of memory");
            return TPAR_EXIT_FAIL;
        }
        return tpar_cli_launch_self(cmd, c.tp * c.dp, TPAR_BACKEND_SHM, NULL, restarts < 0 ? 0 : (int)restarts,
                                    argc, argv);
    }
    const char *r = tpar_cli_rank_name(); // under mpirun too
    int r0 = !strcmp(r, "0");
    // Rank 0 records the command line and draws the progress of long work (checkpoints).
    char *line = command_line(argc, argv);
    c.command = line;
    tpar_cli_progress_t prog;
    if (r0) c.progress = tpar_cli_progress(&prog);
    tpar_train_result_t res;
    int fail = tpar_train_run(&c, &res, &err) != TPAR_OK;
    free(line);
    if (fail) {
        tpar_fault_note_error(err.msg); // for the supervisor's report
        if (!res.config_error && !res.same_error) tpar_cli_error(cmd, "rank %s: %s", r, err.msg);
        else if (r0) tpar_cli_error(cmd, "%s", err.msg);
        return res.config_error ? TPAR_EXIT_USAGE : TPAR_EXIT_FAIL;
    }
    return TPAR_EXIT_OK;
}
