/* `tpar tokenize IN... -o FILE`: text files -> a binary token file (the format `tpar train --data`
 * reads, io's tpar_tokens_write_bin) through a byte-level BPE tokenizer (src/tokenizer). Progress
 * on stderr with MiB/s and tokens/s. */
#define _XOPEN_SOURCE 700
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "tpar/io.h"
#include "tpar/tokenizer.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: tpar tokenize IN... -o FILE [options]\n\n"
            "Turns text files into one binary token file for `tpar train --data FILE`, with a byte-level\n"
            "BPE tokenizer (GPT-2, Llama 3, SmolLM, Qwen-style). The files are tokenized one after the\n"
            "other, each on its own, and their tokens concatenated.\n\n"
            "options:\n"
            "  -o, --output FILE      the token file to write (required); replaced atomically\n"
            "  --tokenizer PATH       a directory with tokenizer.json (+ tokenizer_config.json) or with\n"
            "                         encoder.json + vocab.bpe, or one of those files (default: GPT-2's\n"
            "                         files in data/gpt2-bpe, from the working directory or beside the program)\n"
            "  --bos                  put the BOS token before each file\n"
            "  --eos                  put the EOS token after each file (a document separator)\n"
            "  --special              recognise special tokens such as <|endoftext|> in the text (by\n"
            "                         default their text is ordinary text)\n"
            "  -q, --quiet            no progress, no summary\n"
            "  -h, --help             this text\n");
}

/* The default tokenizer: data/gpt2-bpe from the working directory, else from the directory above
 * the program's (build/tpar -> data/gpt2-bpe of the source tree). */
static const char *default_tokenizer(char *buf, size_t n) {
    struct stat sb;
    if (stat("data/gpt2-bpe/encoder.json", &sb) == 0) return "data/gpt2-bpe";
    char exe[PATH_MAX];
    ssize_t k = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (k > 0) {
        exe[k] = '\0';
        char *slash = strrchr(exe, '/');
        if (slash) {
            *slash = '\0';
            snprintf(buf, n, "%.3000s/../data/gpt2-bpe", exe);
            char probe[4200];
            snprintf(probe, sizeof probe, "%s/encoder.json", buf);
            if (stat(probe, &sb) == 0) return buf;
        }
    }
    return "data/gpt2-bpe"; /* the error will name it */
}

/* Progress: the meter's bytes line plus tokens/s. */
typedef struct {
    tpar_cli_progress_t p;
    const size_t *ntok;
    double t0;
} tok_progress_t;

static void draw(void *ctx, const char *what, uint64_t done, uint64_t total) {
    tok_progress_t *t = ctx;
    char line[256];
    int final = 0;
    double now = tpar_now(), every = t->p.tty ? 0.1 : 5.0;
    if (!tpar_meter_update(&t->p.meter, what, done, total, now, t->p.tty, t->p.delay, every, line, sizeof line, &final))
        return;
    double el = now - t->t0;
    double rate = el > 0 ? (double)*t->ntok / el : 0.0;
    if (t->p.tty) fprintf(stderr, "\r%s  %.0f tokens/s\033[K%s", line, rate, final ? "\n" : "");
    else fprintf(stderr, "%s, %.0f tokens/s\n", line, rate);
    fflush(stderr);
}

/* Reads a whole regular file (stat first: a FIFO is refused, not waited on). */
static int read_all(const char *cmd, const char *path, char **buf, size_t *len) {
    struct stat sb;
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0 || fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        tpar_cli_error(cmd, "cannot read %s: %s", path, fd < 0 ? strerror(errno) : "not a regular file");
        if (fd >= 0) close(fd);
        return -1;
    }
    size_t n = (size_t)sb.st_size, got = 0;
    char *b = malloc(n ? n : 1);
    if (!b) {
        tpar_cli_error(cmd, "out of memory reading %s (%zu bytes)", path, n);
        close(fd);
        return -1;
    }
    while (got < n) {
        ssize_t r = read(fd, b + got, n - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            tpar_cli_error(cmd, "cannot read %s: %s", path, r < 0 ? strerror(errno) : "the file shrank");
            free(b);
            close(fd);
            return -1;
        }
        got += (size_t)r;
    }
    close(fd);
    *buf = b;
    *len = n;
    return 0;
}

/* Appends one id to the encoder's growing buffer. 0 or -1. */
static int push(int32_t **ids, size_t *n, size_t *cap, int32_t v) {
    if (*n == *cap) {
        size_t c = *cap ? 2 * *cap : 1024;
        int32_t *q = realloc(*ids, c * sizeof *q);
        if (!q) return -1;
        *ids = q;
        *cap = c;
    }
    (*ids)[(*n)++] = v;
    return 0;
}

enum { O_TOKENIZER = 256, O_BOS, O_EOS, O_SPECIAL };

int tpar_cmd_tokenize(int argc, char **argv) {
    static const struct option opts[] = {{"output", required_argument, 0, 'o'},
                                         {"tokenizer", required_argument, 0, O_TOKENIZER},
                                         {"bos", no_argument, 0, O_BOS},
                                         {"eos", no_argument, 0, O_EOS},
                                         {"special", no_argument, 0, O_SPECIAL},
                                         {"quiet", no_argument, 0, 'q'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    const char *cmd = "tokenize", *out = NULL, *tok_path = NULL;
    int bos = 0, eos = 0, flags = 0, quiet = 0, ch;
    const char **in = calloc((size_t)argc + 1, sizeof *in);
    if (!in) return TPAR_EXIT_FAIL;
    int nin = 0;
    optind = 1;
    for (;;) { // options may come before or after the inputs
        while ((ch = tpar_cli_getopt(cmd, argc, argv, "o:qh", opts)) != -1) {
            switch (ch) {
            case 'h': usage(stdout); free(in); return TPAR_EXIT_OK;
            case 'o': out = optarg; break;
            case 'q': quiet = 1; break;
            case O_TOKENIZER: tok_path = optarg; break;
            case O_BOS: bos = 1; break;
            case O_EOS: eos = 1; break;
            case O_SPECIAL: flags |= TPAR_TOK_SPECIAL; break;
            default: free(in); return TPAR_EXIT_USAGE;
            }
        }
        if (optind >= argc) break;
        in[nin++] = argv[optind++];
    }
    if (nin == 0 || !out) {
        tpar_cli_error(cmd, "%s", nin == 0 ? "no input file" : "no output file: -o FILE");
        fprintf(stderr, "hint: 'tpar tokenize --help' shows the usage\n");
        free(in);
        return TPAR_EXIT_USAGE;
    }
    char defbuf[4096];
    if (!tok_path) tok_path = default_tokenizer(defbuf, sizeof defbuf);
    tpar_err_t err = {0};
    tpar_tokenizer_t *tk = NULL;
    if (tpar_tokenizer_load(tok_path, &tk, &err) != TPAR_OK) {
        tpar_cli_error(cmd, "%s", err.msg);
        free(in);
        return TPAR_EXIT_FAIL;
    }
    int rc = TPAR_EXIT_OK;
    int32_t bos_id = tpar_tokenizer_bos(tk), eos_id = tpar_tokenizer_eos(tk);
    if ((bos && bos_id < 0) || (eos && eos_id < 0)) {
        tpar_cli_error(cmd, "the tokenizer has no %s token (%s)", bos && bos_id < 0 ? "BOS" : "EOS",
                       tpar_tokenizer_describe(tk));
        rc = TPAR_EXIT_USAGE;
    }
    uint64_t total = 0;
    for (int i = 0; i < nin && rc == TPAR_EXIT_OK; i++) {
        struct stat sb;
        if (stat(in[i], &sb) != 0 || !S_ISREG(sb.st_mode)) {
            tpar_cli_error(cmd, "cannot read %s: %s", in[i], errno ? strerror(errno) : "not a regular file");
            rc = TPAR_EXIT_FAIL;
        } else {
            total += (uint64_t)sb.st_size;
        }
    }
    int32_t *ids = NULL;
    size_t n = 0, cap = 0;
    tok_progress_t prog = {.ntok = &n, .t0 = tpar_now()};
    tpar_progress_t p = tpar_cli_progress(&prog.p);
    p = (tpar_progress_t){draw, &prog};
    uint64_t base = 0;
    if (rc == TPAR_EXIT_OK && !quiet) tpar_progress_report(&p, "tokenizing", 0, total);
    for (int i = 0; i < nin && rc == TPAR_EXIT_OK; i++) {
        char *text = NULL;
        size_t len = 0;
        if (read_all(cmd, in[i], &text, &len)) {
            rc = TPAR_EXIT_FAIL;
            break;
        }
        if (!quiet) tpar_tokenizer_set_progress(tk, &p, "tokenizing", base, total);
        tpar_status st = TPAR_OK;
        if (bos && push(&ids, &n, &cap, bos_id)) st = tpar_err_set(&err, TPAR_ERR_NOMEM, "out of memory");
        if (st == TPAR_OK) st = tpar_tokenizer_encode(tk, text, len, flags, &ids, &n, &cap, &err);
        if (st == TPAR_OK && eos && push(&ids, &n, &cap, eos_id)) st = tpar_err_set(&err, TPAR_ERR_NOMEM, "out of memory");
        free(text);
        if (st != TPAR_OK) {
            tpar_cli_error(cmd, "%s: %s", in[i], err.msg);
            rc = TPAR_EXIT_FAIL;
        }
        base += len;
    }
    if (rc == TPAR_EXIT_OK && !quiet) tpar_progress_report(&p, "tokenizing", total, total);
    double secs = tpar_now() - prog.t0;
    if (rc == TPAR_EXIT_OK && n == 0) {
        tpar_cli_error(cmd, "the inputs hold no text: no tokens to write");
        rc = TPAR_EXIT_FAIL;
    }
    int vocab = tpar_tokenizer_vocab_size(tk);
    if (rc == TPAR_EXIT_OK && tpar_tokens_write_bin(out, ids, n, vocab <= 65536 ? 2 : 4, vocab, &err) != TPAR_OK) {
        tpar_cli_error(cmd, "%s", err.msg);
        rc = TPAR_EXIT_FAIL;
    }
    if (rc == TPAR_EXIT_OK && !quiet)
        printf("wrote %s: %zu tokens (vocab %d) from %d file%s, %.1f MiB, %.1f MiB/s, %.0f tokens/s, %.2f bytes/token\n",
               out, n, vocab, nin, nin == 1 ? "" : "s", (double)total / 1048576.0,
               secs > 0 ? (double)total / 1048576.0 / secs : 0.0, secs > 0 ? (double)n / secs : 0.0,
               n ? (double)total / (double)n : 0.0);
    free(ids);
    free(in);
    tpar_tokenizer_free(tk);
    return rc;
}
