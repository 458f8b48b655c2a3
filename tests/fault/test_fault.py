"""Surviving failures end to end: `tpar train --max-restarts` with faults injected by TPAR_FAULT.

A malformed TPAR_FAULT makes `tpar train` exit 2 before starting ranks.
Every run: tiny model, TP=2, batch 4 x 32 tokens, 8 steps, a checkpoint every 2 steps (keep 2),
TPAR_COMM_TIMEOUT=3 s (the communication deadline) and TPAR_LAUNCH_GRACE=1 s (the launcher's
grace before SIGTERM, then before SIGKILL).

  reference  8 steps uninterrupted.
  kill       rank 1 SIGKILLs itself at the start of step 6: the supervisor reports rank, signal,
             step and last call, restarts from step 4 (1 completed step lost, reported in the output
             and as a restart event in the metrics) and finishes; the final loss and the step-8
             weights and optimizer files are bit-identical to the reference.
  save-kill  rank 1 SIGKILLs itself in the middle of the checkpoint save of step 6: the run resumes
             from step 4 (step 4 was not rotated away before 6 was complete) with the same result;
             keep 2 leaves step 6 and 8 and no temporary directory.
  stop       rank 1 SIGSTOPs itself at step 6 (alive but frozen): rank 0 fails at the deadline
             naming rank 1, the launcher ends the frozen rank, the supervisor names rank 1 (not
             rank 0, whose timeout only echoes it), the job restarts and finishes bit-identically.
  corrupt    a flipped byte in the newest checkpoint (the reference's step 8): --resume warns, takes
             step 6, trains steps 7 and 8 and still ends bit-identically (crc32 check on load).
  exhausted  rank 1 spins forever before its 40th communication call in every attempt (the
             collective-sequence form): after --max-restarts 1 the job exits non-zero with the
             reason naming rank 1; no process of the job is left, no new entry in /dev/shm.
Helpers shared with test_chaos.py are in faultlib.py.

Timing bounds (the machine may be heavily loaded; the bounds are generous on purpose): every run
must end within RUN_LIMIT_S (else the test fails on subprocess's timeout). A stalled rank is caught
by the 3 s deadline and ended after the 1 s grace (SIGTERM with SIGCONT), so the stopped run may
take at most two reference runs (the attempt up to the stall, the restarted one) plus the deadline,
twice the grace and STALL_SLACK_S for the load; the peers' message must say "after 3 s".
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

from faultlib import check, final_files, finish, job_processes, shm_entries

TPAR = sys.argv[1]
DATA = sys.argv[2]
RUN_LIMIT_S = 120
STALL_SLACK_S = 30


def train(save_dir, metrics, *args, fault=None, restarts=2):
    env = dict(os.environ, TPAR_COMM_TIMEOUT="3", TPAR_LAUNCH_GRACE="1")
    env.pop("TPAR_FAULT", None)
    if fault:
        env["TPAR_FAULT"] = fault
    cmd = [TPAR, "train", "--data", DATA, "--tp", "2", "--batch", "4", "--seq", "32", "--steps", "8",
           "--save-every", "2", "--keep", "2", "--val-every", "0", "--val-batches", "1", "--log-every", "1",
           "--save-dir", save_dir, "--metrics", metrics, "--max-restarts", str(restarts)] + list(args)
    t0 = time.monotonic()
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                       timeout=RUN_LIMIT_S)
    return p.returncode, p.stdout, time.monotonic() - t0


def metrics(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def steps_of(ms):
    return [m for m in ms if "step" in m and "event" not in m]


def same_result(name, save_dir, mpath, out):
    ms = steps_of(metrics(mpath)) if os.path.exists(mpath) else []
    check(ms and ms[-1]["step"] == 8, "%s: the run reached step 8" % name, out)
    if ms and ref_steps:
        check(ms[-1]["loss"] == ref_steps[-1]["loss"],
              "%s: final loss %r == uninterrupted %r" % (name, ms[-1]["loss"], ref_steps[-1]["loss"]))
    got = final_files(save_dir)
    for fn, data in got.items():
        check(data is not None and data == ref_files[fn],
              "%s: step-8 %s byte-identical to the uninterrupted run" % (name, fn))


tmp = tempfile.mkdtemp(prefix="tpar_test_fault_")
shm_before = shm_entries()
try:
    # ---- a malformed TPAR_FAULT is rejected before any rank starts -------------------------------
    rc, out, _ = train(os.path.join(tmp, "bad"), os.path.join(tmp, "bad.jsonl"), fault="rank=1,step=5,kind=explode")
    check(rc == 2 and "TPAR_FAULT='rank=1,step=5,kind=explode': expected" in out and "step 1" not in out,
          "bad TPAR_FAULT: exit %d (want 2) with a message, no step run" % rc, out)

    # ---- reference ----------------------------------------------------------------------------
    ref_dir, ref_m = os.path.join(tmp, "ref"), os.path.join(tmp, "ref.jsonl")
    rc, out, ref_dt = train(ref_dir, ref_m)
    check(rc == 0, "reference run: exit %d" % rc, out)
    ref_steps = steps_of(metrics(ref_m)) if os.path.exists(ref_m) else []
    ref_files = final_files(ref_dir)
    check(len(ref_steps) == 8 and ref_files["model.safetensors"], "reference: 8 steps and a step-8 checkpoint", out)
    check("restart" not in out, "reference: no restart", out)
    print("reference: %.1f s, final loss %s" % (ref_dt, ref_steps[-1]["loss"] if ref_steps else "?"), flush=True)

    # ---- kill at step 6 -------------------------------------------------------------------------
    d, m = os.path.join(tmp, "kill"), os.path.join(tmp, "kill.jsonl")
    rc, out, dt = train(d, m, fault="rank=1,step=6,kind=kill")
    check(rc == 0, "kill: exit %d after the restart" % rc, out)
    check("tpar launch: attempt 1 failed: rank 1 killed by signal 9 (SIGKILL) at step 6, last communication call: "
          in out, "kill: the supervisor reports rank, signal, step and call", out)
    check("rank 0 reported: " in out and "rank 1 (world rank 1" in out, "kill: rank 0's error names rank 1", out)
    check("resuming from " + os.path.join(d, "step_00000004") in out, "kill: resumed from step 4", out)
    check("restart 1: resumed at step 4; 1 completed step lost" in out, "kill: restart and lost steps printed", out)
    check("finished after 1 restart (1 completed step lost" in out, "kill: supervisor's summary", out)
    ev = [x for x in metrics(m) if x.get("event") == "restart"] if os.path.exists(m) else []
    check(len(ev) == 1 and ev[0]["restart"] == 1 and ev[0]["resumed_step"] == 4 and ev[0]["lost_steps"] == 1
          and "SIGKILL" in ev[0]["reason"], "kill: one restart event in the metrics: %s" % ev)
    check([x["step"] for x in steps_of(metrics(m))] == [1, 2, 3, 4, 5, 5, 6, 7, 8],
          "kill: the resumed run appends to the metrics (step 5 twice)")
    same_result("kill", d, m, out)
    print("kill: %.1f s" % dt, flush=True)

    # ---- kill during the checkpoint save of step 6 --------------------------------------------------
    d, m = os.path.join(tmp, "savekill"), os.path.join(tmp, "savekill.jsonl")
    rc, out, dt = train(d, m, fault="rank=1,save=6,kind=kill")
    check(rc == 0, "save-kill: exit %d" % rc, out)
    check("rank 1 killed by signal 9 (SIGKILL) while saving the checkpoint of step 6" in out,
          "save-kill: the report says it died in the save", out)
    check("resuming from " + os.path.join(d, "step_00000004") in out,
          "save-kill: resumed from the previous checkpoint (step 4)", out)
    check("restart 1: resumed at step 4; 2 completed steps lost" in out, "save-kill: 2 steps lost", out)
    same_result("save-kill", d, m, out)
    left = sorted(os.listdir(d)) if os.path.isdir(d) else []
    check([e for e in left if e.startswith("step_")] == ["step_00000006", "step_00000008"],
          "save-kill: keep 2 leaves step 6 and 8 and no temporary directory: %s" % left)
    print("save-kill: %.1f s" % dt, flush=True)

    # ---- a stopped (SIGSTOP) rank ------------------------------------------------------------------
    d, m = os.path.join(tmp, "stop"), os.path.join(tmp, "stop.jsonl")
    rc, out, dt = train(d, m, fault="rank=1,step=6,kind=stop")
    check(rc == 0, "stop: exit %d" % rc, out)
    check("timed out after 3 s waiting for rank 1" in out, "stop: rank 0 fails at the 3 s deadline naming rank 1", out)
    check("tpar launch: attempt 1 failed: rank 1 did not answer at step 6, last communication call: " in out
          and "; rank 0 timed out waiting for it, then the launcher ended it (killed by signal" in out,
          "stop: the supervisor names the stopped rank (not rank 0, whose timeout was the echo) at step 6", out)
    check("rank 1 (pid" in out and "killed by signal" in out, "stop: the launcher ends the frozen rank", out)
    check("restart 1: resumed at step 4" in out, "stop: restarted from step 4", out)
    same_result("stop", d, m, out)
    bound = 2 * ref_dt + 3 + 2 * 1 + STALL_SLACK_S
    check(dt < bound, "stop: stalled run ended in %.1f s (bound %.1f s)" % (dt, bound))
    print("stop: %.1f s" % dt, flush=True)

    # ---- a corrupt newest checkpoint ---------------------------------------------------------------
    d, m = os.path.join(tmp, "corrupt"), os.path.join(tmp, "corrupt.jsonl")
    shutil.copytree(ref_dir, d)  # step 6 and step 8; flip one byte of step 8's weights
    mf = os.path.join(d, "step_00000008", "model.safetensors")
    blob = bytearray(open(mf, "rb").read())
    blob[len(blob) // 2] ^= 0x40
    open(mf, "wb").write(bytes(blob))
    rc, out, dt = train(d, m, "--resume")
    check(rc == 0, "corrupt: exit %d" % rc, out)
    check("warning: " in out and "step_00000008" in out, "corrupt: a warning names the skipped checkpoint", out)
    check("resuming from " + os.path.join(d, "step_00000006") in out, "corrupt: resumed from step 6", out)
    same_result("corrupt", d, m, out)
    print("corrupt: %.1f s" % dt, flush=True)

    # ---- exhausted restarts ------------------------------------------------------------------------
    d, m = os.path.join(tmp, "exhausted"), os.path.join(tmp, "exhausted.jsonl")
    rc, out, dt = train(d, m, fault="rank=1,coll=40,kind=spin,attempt=all", restarts=1)
    check(rc != 0, "exhausted: exit status %d is non-zero" % rc, out)
    check("tpar launch: restart 1 of 1" in out, "exhausted: one restart", out)
    check("tpar launch: giving up after 1 restart (--max-restarts 1): rank 1 did not answer" in out,
          "exhausted: gives up with the reason, naming the spinning rank", out)
    check("timed out after 3 s waiting for rank 1" in out, "exhausted: the spinning rank is named", out)
    time.sleep(0.5)
    left = job_processes(tmp)
    check(not left, "exhausted: no process of the job left: %s" % left)
    print("exhausted: %.1f s" % dt, flush=True)
finally:
    shutil.rmtree(tmp, ignore_errors=True)

shm_after = shm_entries()
check(shm_after == shm_before, "no new /dev/shm entries: before %s after %s" % (sorted(shm_before), sorted(shm_after)))
finish()
