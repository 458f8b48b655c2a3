/* A stand-in rank for test_primary.sh: it leaves on the fault board the message a real rank
 * would, in an order chosen to mislead the supervisor (the rank that only echoes another's
 * failure ends first), then ends. argv[1]:
 *   diskfull  rank 0 fails a save on its own (No space left on device) 0.5 s after rank 1 has
 *             exited with "another rank failed to write its part"
 *   stall     rank 0 exits at once with a timeout naming rank 1; rank 1 never answers (the
 *             launcher ends it)
 *   kill      rank 1 is killed by SIGKILL; rank 0 reports it as a dead peer a moment later */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tpar/fault.h"

int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "";
    const char *r = getenv("TPAR_RANK");
    int rank = r ? atoi(r) : 0;
    char msg[256];
    tpar_fault_point(TPAR_FAULT_AT_STEP, 3);
    if (!strcmp(mode, "diskfull")) {
        tpar_fault_point(TPAR_FAULT_AT_SAVE, 3);
        if (rank == 1) {
            tpar_fault_note_error("checkpoint ck/step_00000003.tmp/optim.safetensors: another rank failed to write its part");
            return 1;
        }
        usleep(200 * 1000);
        tpar_fault_note_error("cannot allocate 6749888 bytes for ck/step_00000003.tmp/optim.safetensors: No space left on device");
        return 1;
    }
    if (!strcmp(mode, "stall")) {
        if (rank == 1) {
            for (;;) pause();
        }
        snprintf(msg, sizeof msg, "allreduce #9 (16 x f32 sum) on a 2-rank shm communicator: timed out after 1 s "
                                  "waiting for rank 1 (world rank 1, pid %d)", (int)getppid());
        tpar_fault_note_error(msg);
        return 1;
    }
    if (!strcmp(mode, "kill")) {
        if (rank == 1) raise(SIGKILL);
        usleep(300 * 1000);
        tpar_fault_note_error("allreduce #9 (16 x f32 sum) on a 2-rank shm communicator: rank 1 (world rank 1, "
                              "pid 1) died before taking part");
        return 1;
    }
    fprintf(stderr, "usage: fault_rank diskfull|stall|kill\n");
    return 2;
}
