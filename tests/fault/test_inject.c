/* TPAR_FAULT parsing and each kind of fault, fired in a forked child (the fault state is per
 * process and this parent never touches it), plus the progress board the supervisor reads. */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "tpar/fault.h"

static int check_env(const char *v) {
    tpar_err_t err = {0};
    if (v) setenv("TPAR_FAULT", v, 1);
    else unsetenv("TPAR_FAULT");
    return tpar_fault_check_env(&err) == TPAR_OK;
}

/* Forks a child with the given TPAR_FAULT and rank that passes the fault points of steps 1..5,
 * a save of step 4 and 10 communication calls, then exits 0. Returns its wait status
 * (WUNTRACED: a stopped child is reported, then killed). Gives up on a child alive after 2 s. */
static int run_child(const char *fault, const char *rank, const char *attempt, tpar_fault_board_t *board) {
    pid_t p = fork();
    if (p == 0) {
        setenv("TPAR_FAULT", fault, 1);
        setenv("TPAR_RANK", rank, 1);
        setenv("TPAR_RESTART_COUNT", attempt, 1);
        char fd[16];
        snprintf(fd, sizeof fd, "%d", tpar_fault_board_fd(board));
        setenv("TPAR_FAULT_BOARD_FD", fd, 1);
        for (int s = 1; s <= 5; s++) {
            tpar_fault_point(TPAR_FAULT_AT_STEP, s);
            tpar_fault_coll("allreduce", (unsigned long long)(2 * s - 1), 16, "f32", 2);
            tpar_fault_coll("allgather", (unsigned long long)(2 * s), 8, "f32", 2);
            if (s == 4) tpar_fault_point(TPAR_FAULT_AT_SAVE, s);
        }
        tpar_fault_note_error("finished");
        _exit(0);
    }
    int ws = 0;
    for (int i = 0; i < 200; i++) {
        pid_t r = waitpid(p, &ws, WNOHANG | WUNTRACED);
        if (r == p && WIFSTOPPED(ws)) {
            kill(p, SIGKILL);
            waitpid(p, NULL, 0);
            return ws;
        }
        if (r == p) return ws;
        usleep(10000);
    }
    kill(p, SIGKILL); // stall and spin never end by themselves
    waitpid(p, NULL, 0);
    return -1;
}

int main(void) {
    // ---- parsing ----
    CHECK(check_env(NULL));
    CHECK(check_env(""));
    CHECK(check_env("rank=1,step=5,kind=kill"));
    CHECK(check_env("kind=abort,save=3,rank=0,attempt=all"));
    CHECK(check_env("rank=2,coll=17,kind=stop,attempt=1"));
    CHECK(!check_env("rank=1,step=5"));                 // no kind
    CHECK(!check_env("rank=1,kind=kill"));              // no place
    CHECK(!check_env("step=5,kind=kill"));              // no rank
    CHECK(!check_env("rank=1,step=5,coll=3,kind=kill")); // two places
    CHECK(!check_env("rank=1,step=5,kind=explode"));
    CHECK(!check_env("rank=1,coll=0,kind=kill"));       // calls count from 1
    CHECK(!check_env("rank=x,step=5,kind=kill"));
    CHECK(!check_env("rank=1,step=5,kind=kill,when=now"));
    tpar_err_t err = {0};
    setenv("TPAR_FAULT", "rank=1,kind=kill", 1);
    CHECK(tpar_fault_check_env(&err) == TPAR_ERR_INVALID_ARG);
    CHECK_STR_CONTAINS(err.msg, "TPAR_FAULT='rank=1,kind=kill'");
    unsetenv("TPAR_FAULT");

    tpar_fault_board_t *b = NULL;
    CHECK(tpar_fault_board_create(2, &b, &err) == TPAR_OK);
    if (!b) return check_finish("test_inject");
    tpar_fault_slot_t s;

    // ---- kinds ----
    int ws = run_child("rank=1,step=3,kind=kill", "1", "0", b);
    CHECK(ws != -1 && WIFSIGNALED(ws) && WTERMSIG(ws) == SIGKILL);
    tpar_fault_board_read(b, 1, &s);
    CHECK(s.step == 3 && s.first_step == 1 && !s.saving);
    CHECK_STR_CONTAINS(s.coll, "allgather #4 (8 x f32) on a 2-rank communicator, call 4 of this rank");
    CHECK(s.error[0] == 0);

    tpar_fault_board_clear(b);
    ws = run_child("rank=1,save=4,kind=abort", "1", "0", b);
    CHECK(ws != -1 && WIFSIGNALED(ws) && WTERMSIG(ws) == SIGABRT);
    tpar_fault_board_read(b, 1, &s);
    CHECK(s.step == 4 && s.saving);

    tpar_fault_board_clear(b);
    ws = run_child("rank=0,coll=7,kind=exit", "0", "0", b);
    CHECK(ws != -1 && WIFEXITED(ws) && WEXITSTATUS(ws) == TPAR_FAULT_EXIT_CODE);
    tpar_fault_board_read(b, 0, &s);
    CHECK(s.step == 4);
    CHECK_STR_CONTAINS(s.coll, "call 7 of this rank");

    ws = run_child("rank=1,step=2,kind=stop", "1", "0", b);
    CHECK(ws != -1 && WIFSTOPPED(ws) && WSTOPSIG(ws) == SIGSTOP);
    CHECK(run_child("rank=1,step=2,kind=stall", "1", "0", b) == -1);
    CHECK(run_child("rank=1,coll=3,kind=spin", "1", "0", b) == -1);

    // ---- only the named rank and attempt ----
    tpar_fault_board_clear(b);
    ws = run_child("rank=1,step=3,kind=kill", "0", "0", b); // another rank: runs to the end
    CHECK(ws != -1 && WIFEXITED(ws) && WEXITSTATUS(ws) == 0);
    tpar_fault_board_read(b, 0, &s);
    CHECK(s.step == 5 && s.first_step == 1);
    CHECK(!strcmp(s.error, "finished"));
    ws = run_child("rank=1,step=3,kind=kill", "1", "1", b); // a restart: attempt 0 only by default
    CHECK(ws != -1 && WIFEXITED(ws) && WEXITSTATUS(ws) == 0);
    ws = run_child("rank=1,step=3,kind=kill,attempt=all", "1", "2", b);
    CHECK(ws != -1 && WIFSIGNALED(ws) && WTERMSIG(ws) == SIGKILL);
    ws = run_child("rank=1,step=3,kind=kill,attempt=2", "1", "2", b);
    CHECK(ws != -1 && WIFSIGNALED(ws) && WTERMSIG(ws) == SIGKILL);

    tpar_fault_board_free(b);
    return check_finish("test_inject");
}
