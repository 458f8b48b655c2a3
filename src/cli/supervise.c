/* `tpar launch --max-restarts N` (and `tpar train --max-restarts N`): the launcher as a
 * supervisor, in the manner of torchrun's elastic restarts. Each attempt is one
 * tpar_launch_job (all ranks started together, all stopped when one fails). After a failure it
 * says which rank failed, how (signal or exit status), at which step and in which
 * communication call, and what the other ranks reported; then it starts every rank again with
 * TPAR_RESTART_COUNT=k (a trainer resumes from its newest complete checkpoint), up to N times.
 * The ranks leave their progress on a fault board (fault.h) that the supervisor reads.
 * A signal to the supervisor (SIGINT/SIGTERM) ends the job without restarts. */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "cli.h"
#include "tpar/fault.h"

static void set_env_ll(const char *name, long long v) {
    char buf[32];
    snprintf(buf, sizeof buf, "%lld", v);
    setenv(name, buf, 1);
}

static void how(int ws, char *buf, size_t n) {
    if (WIFSIGNALED(ws))
        snprintf(buf, n, "killed by signal %d (SIG%s)", WTERMSIG(ws), sigabbrev_np(WTERMSIG(ws)) ? sigabbrev_np(WTERMSIG(ws)) : "?");
    else if (WIFEXITED(ws))
        snprintf(buf, n, "exited with status %d", WEXITSTATUS(ws));
    else
        snprintf(buf, n, "ended (wait status %d)", ws);
}

/* Prints the failure of one attempt; returns the last step that some rank completed (-1:
 * unknown) and
 * sets *reason to a one-line summary for the next attempt (TPAR_RESTART_REASON). */
static long long report(const tpar_fault_board_t *b, int n, int attempt, const tpar_launch_fail_t *f, char *reason,
                        size_t cap) {
    tpar_fault_slot_t s;
    tpar_fault_board_read(b, f->rank, &s);
    long long done = -1;
    for (int r = 0; r < n; r++) {
        tpar_fault_slot_t o;
        tpar_fault_board_read(b, r, &o);
        long long d = o.step < 0 ? -1 : o.saving ? o.step : o.step - 1; // a step being saved is complete
        if (d > done) done = d;
    }
    char h[96], where[96] = "";
    how(f->wstatus, h, sizeof h);
    if (s.step >= 0) snprintf(where, sizeof where, " %s step %lld", s.saving ? "while saving the checkpoint of" : "at", s.step);
    snprintf(reason, cap, "rank %d %s%s%s%s", f->rank, h, where, s.coll[0] ? ", last communication call: " : "", s.coll);
    fprintf(stderr, "tpar launch: attempt %d failed: %s\n", attempt + 1, reason);
    // Where every rank was (a stalled rank shows an older last call than the others); the
    // error each reported. Beyond 16 ranks only those that reported one.
    for (int r = 0; r < n; r++) {
        tpar_fault_slot_t o;
        tpar_fault_board_read(b, r, &o);
        if (n <= 16 && o.step >= 0)
            fprintf(stderr, "tpar launch:   rank %d was %s step %lld, last call: %s\n", r, o.saving ? "saving" : "at",
                    o.step, o.coll[0] ? o.coll : "none");
        if (o.error[0]) fprintf(stderr, "tpar launch:   rank %d reported: %s\n", r, o.error);
    }
    return done;
}

int tpar_launch_supervise(int n, char **prog, double grace, int max_restarts) {
    tpar_err_t err = {0};
    tpar_fault_board_t *board;
    if (tpar_fault_check_env(&err) || tpar_fault_board_create(n, &board, &err)) {
        tpar_cli_error("launch", "%s", err.msg);
        return TPAR_EXIT_USAGE;
    }
    set_env_ll("TPAR_FAULT_BOARD_FD", tpar_fault_board_fd(board));
    long long lost = 0, last_done = -1;
    int rc = 0;
    for (int attempt = 0;; attempt++) {
        set_env_ll("TPAR_RESTART_COUNT", attempt);
        tpar_fault_board_clear(board);
        tpar_launch_fail_t f;
        rc = tpar_launch_job(n, prog, grace, &f);
        if (attempt > 0) { // steps completed before the failure that this attempt had to run again
            tpar_fault_slot_t s0;
            tpar_fault_board_read(board, 0, &s0);
            if (s0.first_step >= 1 && last_done >= s0.first_step) lost += last_done - s0.first_step + 1;
        }
        if (rc == 0) {
            if (attempt > 0)
                printf("tpar launch: finished after %d restart%s (%lld completed step%s lost and redone)\n", attempt,
                       attempt == 1 ? "" : "s", lost, lost == 1 ? "" : "s");
            break;
        }
        if (f.signal) {
            fprintf(stderr, "tpar launch: stopped by signal %d (SIG%s): no restart\n", f.signal, sigabbrev_np(f.signal));
            break;
        }
        if (f.rank < 0) break; // could not start the ranks: restarting would not help
        char reason[768];
        last_done = report(board, n, attempt, &f, reason, sizeof reason);
        if (attempt >= max_restarts) {
            fprintf(stderr, "tpar launch: giving up after %d restart%s (--max-restarts %d): %s\n", attempt,
                    attempt == 1 ? "" : "s", max_restarts, reason);
            break;
        }
        fprintf(stderr, "tpar launch: restart %d of %d: starting all %d ranks again\n", attempt + 1, max_restarts, n);
        set_env_ll("TPAR_RESTART_LAST_STEP", last_done);
        setenv("TPAR_RESTART_REASON", reason, 1);
        fflush(NULL);
    }
    tpar_fault_board_free(board);
    return rc;
}
