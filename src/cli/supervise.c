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

/* A rank's error that is only the echo of another rank's failure (a secondary failure): a
 * peer that died or did not answer, another rank that failed a save, another communicator of
 * the rank that failed first. These are the phrases the comm layer and the trainer use for
 * them (docs/FAULTS.md). *named gets the world rank the message blames (-1: none). */
static int secondary(const char *e, int *named) {
    *named = -1;
    const char *p = strstr(e, "waiting for rank ");
    if (!p) p = strstr(e, "died before taking part") ? strstr(e, ": rank ") : NULL;
    const char *w = p ? strstr(p, "(world rank ") : NULL;
    if (w) *named = atoi(w + strlen("(world rank "));
    return p || strstr(e, "another rank failed") || strstr(e, "another communicator of this rank failed") ||
           strstr(e, "timed out after") || strstr(e, "died before taking part");
}

/* The rank with the root cause: of the ranks that failed on their own (an error that is not
 * secondary, a signal the launcher did not send, a non-zero exit without a message), the first
 * to fail; else the rank that the others' timeouts name (a stalled rank, ended by the
 * launcher); else the first rank that failed. *stalled_by gets the rank whose timeout named it. */
static int primary_rank(const tpar_fault_board_t *b, int n, const tpar_launch_fail_t *f, int *stalled_by) {
    int best = -1, best_order = 0, blamed = -1;
    *stalled_by = -1;
    for (int r = 0; f->ranks && r < n; r++) {
        const tpar_launch_rank_t *x = &f->ranks[r];
        if (!x->order) continue;
        tpar_fault_slot_t o;
        tpar_fault_board_read(b, r, &o);
        int named = -1;
        int echo = o.error[0] && secondary(o.error, &named);
        if (echo && named >= 0 && named < n && named != r && (blamed < 0 || x->order < f->ranks[blamed].order))
            blamed = r, *stalled_by = named;
        int own = !x->by_launcher && !echo;
        if (own && (best < 0 || x->order < best_order)) best = r, best_order = x->order;
    }
    if (best >= 0) {
        *stalled_by = -1;
        return best;
    }
    if (blamed >= 0) {
        int named = *stalled_by;
        *stalled_by = blamed;
        return named;
    }
    return f->rank;
}

/* Prints the failure of one attempt; returns the last step that some rank completed (-1:
 * unknown) and sets *reason to a one-line summary for the next attempt (TPAR_RESTART_REASON). */
static long long report(const tpar_fault_board_t *b, int n, int attempt, const tpar_launch_fail_t *f, char *reason,
                        size_t cap) {
    int by = -1, p = primary_rank(b, n, f, &by);
    tpar_fault_slot_t s;
    tpar_fault_board_read(b, p, &s);
    long long done = -1;
    for (int r = 0; r < n; r++) {
        tpar_fault_slot_t o;
        tpar_fault_board_read(b, r, &o);
        long long d = o.step < 0 ? -1 : o.saving ? o.step : o.step - 1; // a step being saved is complete
        if (d > done) done = d;
    }
    char h[96], where[96] = "", after[200] = "";
    if (by >= 0) {
        snprintf(h, sizeof h, "did not answer");
        char ended[96] = "";
        if (f->ranks && f->ranks[p].order) how(f->ranks[p].wstatus, ended, sizeof ended);
        snprintf(after, sizeof after, "; rank %d timed out waiting for it%s%s%s", by,
                 ended[0] ? ", then the launcher ended it (" : "", ended, ended[0] ? ")" : "");
    } else {
        how(f->ranks && p != f->rank ? f->ranks[p].wstatus : f->wstatus, h, sizeof h);
    }
    if (s.step >= 0) snprintf(where, sizeof where, " %s step %lld", s.saving ? "while saving the checkpoint of" : "at", s.step);
    snprintf(reason, cap, "rank %d %s%s%s%s%s", p, h, where, s.coll[0] ? ", last communication call: " : "", s.coll,
             after);
    tpar_cli_line("tpar launch: attempt %d failed: %s", attempt + 1, reason);
    if (p != f->rank && f->rank >= 0)
        tpar_cli_line("tpar launch:   (rank %d was the first to end, a consequence of rank %d's failure)", f->rank,
                      p);
    // Where every rank was (a stalled rank shows an older last call than the others); the
    // error each reported. Beyond 16 ranks only those that reported one.
    for (int r = 0; r < n; r++) {
        tpar_fault_slot_t o;
        tpar_fault_board_read(b, r, &o);
        if (n <= 16 && o.step >= 0)
            tpar_cli_line("tpar launch:   rank %d was %s step %lld, last call: %s", r, o.saving ? "saving" : "at",
                          o.step, o.coll[0] ? o.coll : "none");
        if (o.error[0]) tpar_cli_line("tpar launch:   rank %d reported: %s", r, o.error);
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
    tpar_launch_rank_t *ranks = calloc((size_t)n, sizeof *ranks);
    if (!ranks) {
        tpar_fault_board_free(board);
        tpar_cli_error("launch", "out of memory");
        return TPAR_EXIT_FAIL;
    }
    long long lost = 0, last_done = -1;
    int rc = 0;
    for (int attempt = 0;; attempt++) {
        set_env_ll("TPAR_RESTART_COUNT", attempt);
        tpar_fault_board_clear(board);
        tpar_launch_fail_t f = {.ranks = ranks};
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
    free(ranks);
    tpar_fault_board_free(board);
    return rc;
}
