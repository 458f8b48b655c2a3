"""Chaos: random kill -9 and SIGSTOP of random ranks at random moments, saves included.

usage: test_chaos.py TPAR DATA [MPIEXEC]
  TPAR_CHAOS_SEED    the seed (default: from the clock; always printed, so a failure can be rerun)
  TPAR_CHAOS_TRIALS  trials (default 4; more on demand, e.g. TPAR_CHAOS_TRIALS=50)

The run of test_fault.py (tiny model, TP=2, 8 steps, a checkpoint every 2, keep 2) first runs
uninterrupted under `tpar launch` (the reference; also under MPIEXEC when given). Each trial
then draws, from the seed:
  launcher  `tpar train --max-restarts 3` (its own launcher and supervisor) or MPIEXEC (trials
            alternate when MPIEXEC is given);
  target    a random rank; under MPIEXEC also mpiexec itself (kill -9 only);
  signal    SIGKILL or SIGSTOP;
  moment    a random time after the first step, or while the k-th of the run's 4 checkpoints
            is being written (k random; a step_N.tmp directory exists).
Under `tpar launch` the supervisor must restart and the run end with exit 0. Under MPIEXEC the
job must end on its own (MPI_Abort for a stopped rank, Open MPI's own abort for a killed one),
and `tpar train --resume` under MPIEXEC then finishes it. Either way, after each trial:
  - the step-8 weights and optimizer state are byte-identical to the reference;
  - no process of the trial is left (a stopped one included);
  - no /dev/shm entry is left: tpar's own never exist (memfd); Open MPI's segments of a job
    that died are removed by the next tpar run (`tpar info` here; see docs/FAULTS.md), so none
    that no live process holds may remain (another job's live segments are not ours to judge);
  - no step_*.tmp directory is left (the save after the failure removes it).
A trial whose strike came after the run had already finished still checks all of the above.
Bounds: every run must end within RUN_LIMIT_S (a hang fails the test, never hangs it).
"""
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time

import faultlib
from faultlib import check, final_files, finish, held_files, kill_all, shm_entries, train_args, wait_gone

TPAR = sys.argv[1]
DATA = sys.argv[2]
MPIEXEC = sys.argv[3] if len(sys.argv) > 3 and sys.argv[3] else None
RUN_LIMIT_S = 120
seed = int(os.environ.get("TPAR_CHAOS_SEED") or int(time.time() * 1000) % 1000000)
trials = int(os.environ.get("TPAR_CHAOS_TRIALS") or 4)
print("chaos: seed %d, %d trials (rerun with TPAR_CHAOS_SEED=%d TPAR_CHAOS_TRIALS=%d)" % (seed, trials, seed, trials),
      flush=True)
rng = random.Random(seed)

ENV = dict(os.environ, TPAR_COMM_TIMEOUT="3", TPAR_LAUNCH_GRACE="1")
ENV.pop("TPAR_FAULT", None)


def mpi_cmd(args):
    return [MPIEXEC, "--allow-run-as-root", "--oversubscribe", "-np", "2", "-x", "TPAR_COMM_TIMEOUT",
            TPAR] + args


def rank_pids(tag, var):
    """{rank: pid} of the trial's ranks (their environment has var=rank)."""
    out = {}
    for pid in faultlib.job_processes(tag):
        try:
            env = open("/proc/%d/environ" % pid, "rb").read().split(b"\0")
        except OSError:
            continue
        for kv in env:
            if kv.startswith(var.encode() + b"="):
                out[int(kv.split(b"=", 1)[1])] = pid
    return out


def tmp_dirs(save_dir):
    try:
        return [e for e in os.listdir(save_dir) if e.endswith(".tmp")]
    except OSError:
        return []


def started(out_path):
    try:
        return "step " in open(out_path).read()
    except OSError:
        return False


def strike(p, out_path, save_dir, tag, var, target, sig, moment, delay):
    """Waits for the moment (delay seconds after the first step line, or while the moment-th
    checkpoint is being written), then signals the target; returns what was hit."""
    t0 = time.monotonic()
    t_first = None
    seen = set()  # checkpoints seen being written; moment "save k" strikes in the k-th
    while p.poll() is None and time.monotonic() - t0 < RUN_LIMIT_S:
        if t_first is None and started(out_path):
            t_first = time.monotonic()
        pids = rank_pids(tag, var)
        if moment == "time":
            ready = t_first is not None and time.monotonic() - t_first >= delay
        else:
            now = tmp_dirs(save_dir)
            seen.update(now)
            ready = bool(now) and len(seen) >= moment
        ready = ready and len(pids) == 2
        if ready:
            pid = p.pid if target == "launcher" else pids.get(target)
            try:
                os.kill(pid, sig)
            except OSError:
                return "nothing (the target had exited)"
            saving = " during the save of %s" % tmp_dirs(save_dir) if tmp_dirs(save_dir) else ""
            return "%s pid %d with signal %d at %.2f s%s" % (target, pid, sig, time.monotonic() - t0, saving)
        time.sleep(0.01 if moment == "time" else 0.001)
    return "nothing (the run ended first)"


def trial(i, mpi):
    name = "trial %d (%s)" % (i, "mpiexec" if mpi else "tpar launch")
    tag = tempfile.mkdtemp(prefix="tpar_chaos_")
    save_dir, metrics = os.path.join(tag, "ck"), os.path.join(tag, "m.jsonl")
    target = rng.choice([0, 1, "launcher"] if mpi else [0, 1])
    sig = 9 if target == "launcher" else rng.choice([9, 19])  # SIGKILL, SIGSTOP
    moment = rng.choice(["time", rng.randint(1, 4)])  # a time, or the k-th of the 4 saves
    delay = rng.uniform(0.0, 0.6) * ref_dt
    args = train_args(DATA, save_dir, metrics)
    cmd = mpi_cmd(args) if mpi else [TPAR] + args + ["--max-restarts", "3"]
    out_path = os.path.join(tag, "out.txt")
    try:
        with open(out_path, "w") as out:
            p = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, text=True, env=ENV)
            hit = strike(p, out_path, save_dir, tag, "OMPI_COMM_WORLD_RANK" if mpi else "TPAR_RANK",
                         target, sig, moment, delay)
            try:
                rc = p.wait(timeout=RUN_LIMIT_S)
            except subprocess.TimeoutExpired:
                kill_all(tag)
                p.kill()
                rc = p.wait()
                check(False, "%s: the job did not end within %d s after %s" % (name, RUN_LIMIT_S, hit))
        text = open(out_path).read()
        print("%s: struck %s; exit %d" % (name, hit, rc), flush=True)
        if hit.startswith("nothing") and rc != 0:
            # Not a failure of the test: on a loaded machine a rank can miss the short deadline
            # by itself (the deadline doing its job); what follows must still hold.
            errs = [l for l in text.splitlines() if "error:" in l]
            print("%s: note: failed without a strike (exit %d): %s" % (name, rc, errs[:2]), flush=True)
        if mpi:
            left = wait_gone(tag)
            check(not left, "%s: no process left after the failed job: %s" % (name, left), text)
            kill_all(tag)
            if rc != 0:  # finish it the way a user would
                rc, text2, _ = faultlib.run(mpi_cmd(args + ["--resume"]), ENV, RUN_LIMIT_S)
                text += "\n--- resumed:\n" + text2
        check(rc == 0, "%s: the run finished (exit %d)" % (name, rc), text[-3000:])
        got = final_files(save_dir)
        for fn, data in got.items():
            check(data is not None and data == ref[mpi][fn],
                  "%s: step-8 %s byte-identical to the uninterrupted run" % (name, fn))
        check(not tmp_dirs(save_dir), "%s: no .tmp directory left: %s" % (name, tmp_dirs(save_dir)))
        left = wait_gone(tag)
        check(not left, "%s: no process of the job left: %s" % (name, left))
        # The next tpar run removes what a dead MPI job left (segments of 2 s and older).
        time.sleep(2.1)
        subprocess.run([TPAR, "info"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV)
        new = shm_entries(with_mpi=True) - shm_before
        stale = [e for e in new if "/dev/shm/" + e not in held_files()]
        check(not stale, "%s: /dev/shm entries left that no live process holds: %s" % (name, sorted(stale)))
    finally:
        kill_all(tag)
        shutil.rmtree(tag, ignore_errors=True)


shm_before = shm_entries(with_mpi=True)
ref, ref_dt = {}, 0.0
tmp = tempfile.mkdtemp(prefix="tpar_chaos_ref_")
try:
    for mpi in ([False, True] if MPIEXEC else [False]):
        d = os.path.join(tmp, "mpi" if mpi else "launch")
        os.makedirs(d)
        args = train_args(DATA, os.path.join(d, "ck"), os.path.join(d, "m.jsonl"))
        rc, out, dt = faultlib.run(mpi_cmd(args) if mpi else [TPAR] + args, ENV, RUN_LIMIT_S)
        check(rc == 0, "reference (%s): exit %d" % ("mpiexec" if mpi else "tpar launch", rc), out[-3000:])
        ref[mpi] = final_files(os.path.join(d, "ck"))
        if not mpi:
            ref_dt = dt
        print("reference (%s): %.1f s" % ("mpiexec" if mpi else "tpar launch", dt), flush=True)
finally:
    shutil.rmtree(tmp, ignore_errors=True)
if MPIEXEC:
    check(ref[True] == ref[False], "the uninterrupted runs under tpar launch and mpiexec are byte-identical")
for i in range(trials):
    trial(i + 1, bool(MPIEXEC) and i % 2 == 1)
finish()
