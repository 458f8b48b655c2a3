"""`tpar train` against the faults of issue #23 (each case failed before its fix):

  nan stop   TPAR_FAULT kind=nan puts a NaN into one rank's gradient at step 4 (after the DP
             all-reduce, so at DP=2 its peer's loss and norm stay finite): the run stops at step 4
             on every rank with one error naming the step and the tensor, exit 1; nothing of step
             4 or later is saved, and --keep 1 left the step-2 checkpoint (the newest finite one).
             At TP=2 the same with the NaN in TP rank 1's copy of a replicated tensor, which the
             gradient norm does not count.
  nan skip   --on-nonfinite skip: step 4's update is skipped, the run ends (exit 0); the metrics
             and the checkpoint's state count 1 skipped step, and the checkpoint resumes.
  lock       a second job on a --save-dir in use fails at once naming the first job's pid; after
             kill -9 of the first, the directory is free; a supervised restart (--max-restarts)
             keeps it (rank 0 adopts the launcher's lock).
  state      a state.json whose step was edited (manifest checksums recomputed) is refused.
  fifo       a FIFO in place of a checkpoint's state.json: the checkpoint is skipped with a
             warning (no hang: the subprocess timeout is the guard) and the older one resumes.
  latest     `latest` cannot be written (its temporary name taken): warning, the run goes on.
"""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import zlib

TPAR = sys.argv[1]
DATA = sys.argv[2]
failures = []
checks = 0


def check(ok, what):
    global checks
    checks += 1
    if not ok:
        failures.append(what)
        print("FAIL:", what, flush=True)


def train(*args, env=None, expect_rc=0, timeout=120):
    cmd = [TPAR, "train", "--data", DATA, "--batch", "4", "--seq", "32", "--log-every", "1", "--val-every", "0",
           "--val-batches", "1"] + [str(a) for a in args]
    e = dict(os.environ, TPAR_LAUNCH_GRACE="1")
    e.pop("TPAR_FAULT", None)
    e.update(env or {})
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace",
                       timeout=timeout, env=e)
    if expect_rc is not None and p.returncode != expect_rc:
        check(False, "%s: exit %d (expected %d)\n%s" % (" ".join(cmd), p.returncode, expect_rc, p.stdout))
    return p.stdout


def steps_in(d):
    return sorted(n for n in os.listdir(d) if re.fullmatch(r"step_\d+", n)) if os.path.isdir(d) else []


def metrics(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def rewrite_in_manifest(ckpt, name, data):
    """Replaces file `name` of a checkpoint and recomputes its manifest entry (a careful forger)."""
    with open(os.path.join(ckpt, name), "wb") as f:
        f.write(data)
    mp = os.path.join(ckpt, "manifest.json")
    with open(mp) as f:
        man = json.load(f)
    man["files"][name] = {"size": len(data), "crc32": zlib.crc32(data)}
    with open(mp, "w") as f:
        json.dump(man, f)


tmp = tempfile.mkdtemp(prefix="tpar_test_train_faults_")
try:
    # ---- nan stop ---------------------------------------------------------------------------------
    # DP=2: rank 1 is a DP replica (c_fc's gradient); TP=2: rank 1 is TP rank 1, whose copy of the
    # replicated ln_f.weight the gradient norm does not count (only the local scan sees it).
    for tp, dp, tensor in [(1, 2, "h.3.mlp.c_fc.weight"), (2, 1, "ln_f.weight")]:
        what = "non-finite gradients on some rank"
        d = os.path.join(tmp, "nan_%d_%d" % (tp, dp))
        out = train("--tp", tp, "--dp", dp, "--steps", 6, "--save-every", 2, "--keep", 1, "--save-dir", d,
                    env={"TPAR_FAULT": "rank=1,step=4,kind=nan"}, expect_rc=1)
        # (not anchored to "tpar train: error: ": the launcher's lines may interleave with it)
        check("step 4: " + what in out,
              "TP=%d DP=%d: the error names step 4 and says what was non-finite:\n%s" % (tp, dp, out))
        check("first non-finite tensor: the gradient of '%s'" % tensor in out,
              "TP=%d DP=%d: the error names the tensor:\n%s" % (tp, dp, out))
        check(out.count("tpar train: error:") == 1, "TP=%d DP=%d: one error line, not one per rank:\n%s" % (tp, dp, out))
        check("step     4/6 | loss" not in out and "saving checkpoint step 4" not in out,
              "TP=%d DP=%d: step 4 is neither logged as a step nor saved:\n%s" % (tp, dp, out))
        check(steps_in(d) == ["step_00000002"], "TP=%d DP=%d: only the finite step-2 checkpoint: %s" % (tp, dp, steps_in(d)))
    print("nan stop: stopped at step 4, named the tensor, kept step 2")

    # ---- nan skip ---------------------------------------------------------------------------------
    d = os.path.join(tmp, "skip")
    mf = os.path.join(tmp, "skip.jsonl")
    out = train("--dp", 2, "--steps", 6, "--save-every", 3, "--save-dir", d, "--metrics", mf, "--on-nonfinite", "skip",
                env={"TPAR_FAULT": "rank=1,step=4,kind=nan"})
    check("update skipped (--on-nonfinite skip)" in out and "1 step skipped" in out, "skip: reported:\n" + out)
    ms = metrics(mf)
    check([m["skipped_steps"] for m in ms] == [0, 0, 0, 1, 1, 1], "skip: skipped_steps per step: %s" % ms)
    with open(os.path.join(d, "step_00000006", "state.json")) as f:
        check(json.load(f).get("skipped_steps") == 1, "skip: the checkpoint's state counts the skipped step")
    out = train("--dp", 2, "--steps", 6, "--save-dir", d, "--resume", "--on-nonfinite", "skip")
    check("nothing left to train" in out, "skip: the step-6 checkpoint (finite) resumes:\n" + out)
    out = train("--dp", 2, "--steps", 6, "--on-nonfinite", "sometimes", expect_rc=2)
    check("--on-nonfinite expects stop or skip" in out, "a bad --on-nonfinite is a usage error:\n" + out)
    print("nan skip: 1 step skipped, counted, saved and resumed")

    # ---- lock ---------------------------------------------------------------------------------------
    d = os.path.join(tmp, "lock")
    cmd = [TPAR, "train", "--data", DATA, "--tp", "2", "--batch", "2", "--seq", "32", "--steps", "100000",
           "--save-every", "1000", "--save-dir", d, "--log-every", "1000"]
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    lockf = os.path.join(d, "tpar.lock")
    deadline = time.time() + 60
    while time.time() < deadline and not (os.path.exists(lockf) and open(lockf).read().strip()):
        time.sleep(0.05)
    t0 = time.time()
    out = train("--steps", 2, "--save-dir", d, expect_rc=1, timeout=60)
    check("save directory %s is in use by another job (pid %d holds" % (d, p.pid) in out,
          "lock: the second job names the first's pid %d:\n%s" % (p.pid, out))
    check("step " not in out, "lock: the second job fails before any step:\n" + out)
    os.killpg(p.pid, signal.SIGKILL)
    p.wait()
    # p.wait() returns when the launcher is gone; its ranks (same group, killed together) may still be
    # exiting, and the lock goes with the last descriptor: wait, bounded, until the whole group is gone.
    for _ in range(200):
        try:
            os.killpg(p.pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    out = train("--steps", 2, "--save-dir", d)
    check("saved checkpoint step 2" in out, "lock: released by kill -9 of the holder:\n" + out)
    out = train("--tp", 2, "--steps", 4, "--save-every", 2, "--save-dir", os.path.join(tmp, "restart"),
                "--max-restarts", 1, env={"TPAR_FAULT": "rank=1,step=3,kind=kill"})
    check("finished after 1 restart" in out and "resuming from" in out,
          "lock: a supervised restart resumes in its own locked directory:\n" + out)
    print("lock: second job refused naming pid %d; free after kill -9; kept across a restart" % p.pid)

    # ---- state.json's step against its checkpoint -------------------------------------------------------
    d = os.path.join(tmp, "state")
    train("--steps", 4, "--save-every", 2, "--save-dir", d)
    sp = os.path.join(d, "step_00000004", "state.json")
    with open(sp) as f:
        st = json.load(f)
    st["step"] = 2
    rewrite_in_manifest(os.path.join(d, "step_00000004"), "state.json", json.dumps(st).encode())
    out = train("--steps", 6, "--save-dir", d, "--resume", expect_rc=1)
    check("the state says step 2 but the checkpoint (directory name and manifest) is step 4" in out,
          "state: an edited step is refused:\n" + out)

    # ---- a FIFO where state.json should be ---------------------------------------------------------------
    os.unlink(sp)
    os.mkfifo(sp)
    out = train("--steps", 2, "--save-dir", d, "--resume", timeout=60)
    check("warning: skipped checkpoint %s/step_00000004" % d in out and "not a regular file" in out and
          "resuming from %s/step_00000002" % d in out, "fifo: skipped with a warning, older one resumed:\n" + out)
    print("state/fifo: edited step refused; FIFO skipped with a warning")

    # ---- latest cannot be written --------------------------------------------------------------------------
    d = os.path.join(tmp, "latest")
    os.makedirs(os.path.join(d, "latest.tmp"))
    out = train("--steps", 4, "--save-every", 2, "--save-dir", d)
    check("warning: checkpoint step 2 is committed, but" in out and "saved checkpoint step 4" in out,
          "latest: a warning, and the run goes on:\n" + out)
    check(steps_in(d) == ["step_00000002", "step_00000004"], "latest: both checkpoints: %s" % steps_in(d))
    print("latest: unwritable pointer is a warning")
finally:
    shutil.rmtree(tmp, ignore_errors=True)

print("test_train_faults: %d checks, %d failed" % (checks, len(failures)))
sys.exit(1 if failures else 0)
