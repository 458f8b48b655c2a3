/* tpar fault: fault injection for tests, and the board on which ranks leave where they are,
 * so that a supervisor can say where a failed rank was. See docs/FAULTS.md.
 *
 * Injection is driven by one environment variable and is inert when it is unset:
 *
 *   TPAR_FAULT="rank=R,WHERE,kind=KIND[,attempt=A]"
 *     WHERE  step=S   at the start of optimizer step S (before its first collective)
 *            save=S   in the middle of the checkpoint save of step S (model file written,
 *                     optimizer file and commit not yet)
 *            coll=N   when this rank starts its N-th communication call (1-based, counted
 *                     over all of its communicators, in issue order)
 *     KIND   kill     SIGKILL to itself        abort   abort() (SIGABRT)
 *            exit     _exit(TPAR_FAULT_EXIT_CODE) without any clean-up
 *            stop     SIGSTOP to itself (alive but frozen; only SIGKILL/SIGCONT help)
 *            stall    sleeps forever without reaching the next collective
 *            spin     busy-loops forever without reaching the next collective
 *            nan      (step=S only) the trainer puts a NaN into one of this rank's gradients
 *                     of step S (tpar_fault_nan), to test the non-finite checks
 *     A      the restart attempt it fires in (TPAR_RESTART_COUNT; default 0, the first run),
 *            or "all" for every attempt
 *
 * The board is a small shared memory file (a memfd the supervisor creates and hands to the
 * ranks as TPAR_FAULT_BOARD_FD) with one slot per rank: the step it is in, whether it is saving
 * a checkpoint, its last communication call, and its error message if it reported one. */
#ifndef TPAR_FAULT_H
#define TPAR_FAULT_H

#include <stddef.h>

#include "tpar/core.h"

#define TPAR_FAULT_EXIT_CODE 3

typedef enum {
    TPAR_FAULT_AT_STEP = 0, /* n: the step about to run */
    TPAR_FAULT_AT_SAVE,     /* n: the step being saved */
    TPAR_FAULT_AT_COLL      /* n: the call about to start, counted by the fault module itself */
} tpar_fault_site;

/* Checks the syntax of TPAR_FAULT (OK when unset), so that a CLI can reject a bad value
 * before it starts ranks. */
TPAR_API tpar_status tpar_fault_check_env(tpar_err_t *err);

/* A point where a fault may be injected: records n on this rank's board slot (steps and saves)
 * and fires the fault of TPAR_FAULT when it matches this rank, site, n and attempt. */
TPAR_API void tpar_fault_point(tpar_fault_site site, long long n);

/* 1 when TPAR_FAULT asks for a NaN in this rank's gradients at step `step` (kind=nan); the
 * caller injects it. 0 otherwise (always when TPAR_FAULT is unset). */
TPAR_API int tpar_fault_nan(long long step);

/* Called by the comm front end as each call starts: counts it, records it on the board
 * ("allreduce #37 (4096 x f32) on 2 ranks"; seq is its number on its communicator), then
 * fires a coll=N fault that matches. */
TPAR_API void tpar_fault_coll(const char *name, unsigned long long seq, size_t count, const char *dtype, int comm_size);

/* Leaves this rank's error message on the board (the supervisor prints it). */
TPAR_API void tpar_fault_note_error(const char *msg);

/* ---- supervisor side ----------------------------------------------------------------------- */
typedef struct tpar_fault_board tpar_fault_board_t;

typedef struct {
    long long step;       /* step this rank was in (-1: none reported) */
    long long first_step; /* first step this rank ran in this attempt (-1: none) */
    int saving;           /* 1: inside a checkpoint save of `step` */
    char coll[128];       /* its last communication call ("" if none) */
    char error[384];      /* its error message ("" if none) */
} tpar_fault_slot_t;

/* An inheritable memfd of world_size slots (not CLOEXEC: ranks get it through exec). */
TPAR_API tpar_status tpar_fault_board_create(int world_size, tpar_fault_board_t **out, tpar_err_t *err);
TPAR_API int tpar_fault_board_fd(const tpar_fault_board_t *b);
TPAR_API void tpar_fault_board_clear(tpar_fault_board_t *b); /* before each attempt */
TPAR_API void tpar_fault_board_read(const tpar_fault_board_t *b, int rank, tpar_fault_slot_t *out);
TPAR_API void tpar_fault_board_free(tpar_fault_board_t *b);

#endif /* TPAR_FAULT_H */
