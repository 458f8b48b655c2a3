/* Draws the library's progress reports on stderr: a bar redrawn in place (rate, ETA) when
 * stderr is a terminal, a plain line every few seconds otherwise (logs, pipes). Work shorter
 * than the delay shows nothing. */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "cli.h"

static void draw(void *ctx, const char *what, uint64_t done, uint64_t total) {
    tpar_cli_progress_t *p = ctx;
    char line[256];
    int final = 0;
    double every = p->tty ? 0.1 : 5.0, delay = p->delay;
    if (!tpar_meter_update(&p->meter, what, done, total, tpar_now(), p->tty, delay, every, line, sizeof line, &final))
        return;
    if (p->tty) fprintf(stderr, "\r%s\033[K%s", line, final ? "\n" : ""); // \033[K: clear the rest of the line
    else fprintf(stderr, "%s\n", line);
    fflush(stderr);
}

tpar_progress_t tpar_cli_progress(tpar_cli_progress_t *p) {
    *p = (tpar_cli_progress_t){.tty = isatty(STDERR_FILENO)};
    // TPAR_PROGRESS_DELAY: seconds of work before anything is drawn (default 1 on a terminal, 3
    // otherwise; 0 shows every piece of work, which the tests use). A bad value keeps the default.
    double d = p->tty ? 1.0 : 3.0;
    if (tpar_env_double("TPAR_PROGRESS_DELAY", d, 0, 1e6, &p->delay, NULL)) p->delay = d;
    return (tpar_progress_t){draw, p};
}
