"""End-to-end tests of `tpar train` (it launches its own ranks), on tiny shapes.

  layouts   10 steps of one run at TP=1, TP=2, TP=4, DP=2 and TP=2 x DP=2 (the same global
            batch: B=8 per rank without DP, 4 per DP rank with DP=2; the data loader gives the DP
            ranks the two halves of the TP=1 batch). Loss and gradient norm of every step agree
            within rtol 1e-4 (float32 sums in other orders; observed differences are ~1e-6).
  reshard   the TP=2 run saved its checkpoint; loaded at TP=1 and at TP=4 it gives the same
            validation loss (rtol 1e-5).
  resume    20 steps straight, with a checkpoint at step 10, against the same run resumed from
            step 10 in a new process: the metrics of steps 11..20 are identical (the file is
            appended to), and the final weights and optimizer files are byte-identical.
  kill -9   a run saving every step is killed with SIGKILL; the newest complete checkpoint still
            loads and training resumes from it.
  configs   bad configurations exit with status 2 and a clear message before any step.
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

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


def close(a, b, rtol):
    return abs(a - b) <= rtol * max(abs(a), abs(b), 1e-12)


def train(*args, expect_rc=0):
    cmd = [TPAR, "train", "--data", DATA, "--seq", "32", "--log-every", "5", "--val-every", "0",
           "--val-batches", "2"] + [str(a) for a in args]
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace", timeout=120)
    if p.returncode != expect_rc:
        check(False, "%s: exit %d (expected %d)\n%s" % (" ".join(cmd), p.returncode, expect_rc, p.stdout))
    return p.stdout


def metrics(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def val_of(out):
    for line in reversed(out.splitlines()):
        if "val " in line:
            return float(line.rsplit("val ", 1)[1].split()[0])
    return float("nan")


tmp = tempfile.mkdtemp(prefix="tpar_test_train_")
try:
    # ---- layouts ---------------------------------------------------------------------------
    runs = {}
    for tp, dp in [(1, 1), (2, 1), (4, 1), (1, 2), (2, 2)]:
        name = "tp%d_dp%d" % (tp, dp)
        mf = os.path.join(tmp, name + ".jsonl")
        extra = ["--save-dir", os.path.join(tmp, "ck_tp2")] if (tp, dp) == (2, 1) else []
        out = train("--tp", tp, "--dp", dp, "--batch", 8 // dp, "--steps", 10, "--metrics", mf, *extra)
        runs[name] = (metrics(mf) if os.path.exists(mf) else [], out)
    ref, ref_out = runs["tp1_dp1"]
    check(len(ref) == 10, "TP=1 wrote 10 metrics lines (got %d)" % len(ref))
    check(all(k in ref[-1] for k in ["step", "loss", "lr", "grad_norm", "ms", "tokens_per_s", "mfu", "comm_frac",
                                      "val_loss"]), "metrics keys: %s" % sorted(ref[-1]) if ref else "no metrics")
    if ref:
        check(ref[-1]["loss"] < ref[0]["loss"] - 0.3, "loss falls over 10 steps: %s" % [r["loss"] for r in ref])
    for name, (ms, _) in runs.items():
        check(len(ms) == len(ref), "%s: %d steps" % (name, len(ms)))
        for a, b in zip(ref, ms):
            check(close(a["loss"], b["loss"], 1e-4), "%s step %d loss %.7f vs TP=1 %.7f" % (name, a["step"], b["loss"], a["loss"]))
            check(close(a["grad_norm"], b["grad_norm"], 1e-4),
                  "%s step %d grad norm %.7f vs TP=1 %.7f" % (name, a["step"], b["grad_norm"], a["grad_norm"]))
        print("%s: step 10 loss %.6f grad norm %.6f" % (name, ms[-1]["loss"], ms[-1]["grad_norm"]) if ms else name)

    # ---- reshard: saved at TP=2, loaded at TP=1 and TP=4 ----------------------------------------
    v2 = runs["tp2_dp1"][0][-1]["val_loss"] if runs["tp2_dp1"][0] else float("nan")
    for tp in (1, 4):
        out = train("--tp", tp, "--batch", 8, "--steps", 10, "--save-dir", os.path.join(tmp, "ck_tp2"), "--resume")
        check("resuming from" in out and "nothing left to train" in out, "TP=%d loads the TP=2 checkpoint:\n%s" % (tp, out))
        v = val_of(out)
        check(close(v, v2, 1e-5), "validation loss at TP=%d %.7f vs %.7f at TP=2" % (tp, v, v2))
        print("reshard TP=2 -> TP=%d: val %.6f vs %.6f" % (tp, v, v2))

    # ---- resume is bit-exact ---------------------------------------------------------------------
    a_dir, b_dir = os.path.join(tmp, "A"), os.path.join(tmp, "B")
    a_m, b_m = os.path.join(tmp, "a.jsonl"), os.path.join(tmp, "b.jsonl")
    common = ["--tp", 2, "--batch", 4, "--steps", 20, "--warmup", 5, "--dropout", 0.1]
    train(*common, "--save-every", 10, "--save-dir", a_dir, "--metrics", a_m)
    shutil.copytree(a_dir, b_dir)
    shutil.rmtree(os.path.join(b_dir, "step_00000020"))
    with open(os.path.join(b_dir, "latest"), "w") as f:
        f.write("step_00000010\n")
    with open(a_m) as f, open(b_m, "w") as g:
        g.writelines(f.readlines()[:10])  # the metrics of the run that "stopped" at step 10
    out = train(*common, "--save-every", 10, "--save-dir", b_dir, "--metrics", b_m, "--resume")
    check("resuming from" in out, "the second run resumes:\n" + out)
    ma, mb = metrics(a_m), metrics(b_m)
    check(len(mb) == 20, "resumed run appended 10 lines to the metrics (got %d lines)" % len(mb))
    for a, b in zip(ma[10:], mb[10:]):
        check(a["step"] == b["step"] and a["loss"] == b["loss"] and a["grad_norm"] == b["grad_norm"],
              "step %d: resumed loss %r norm %r vs uninterrupted %r %r" % (a["step"], b["loss"], b["grad_norm"],
                                                                         a["loss"], a["grad_norm"]))
    for fn in ("model.safetensors", "optim.safetensors"):
        fa, fb = (os.path.join(d, "step_00000020", fn) for d in (a_dir, b_dir))
        same = os.path.exists(fa) and os.path.exists(fb) and open(fa, "rb").read() == open(fb, "rb").read()
        check(same, "step 20 %s of the resumed run is byte-identical to the uninterrupted one" % fn)
    print("resume: steps 11..20 and the step-20 checkpoint identical")

    # ---- kill -9 during saves ------------------------------------------------------------------
    k_dir = os.path.join(tmp, "K")
    cmd = [TPAR, "train", "--data", DATA, "--tp", "2", "--batch", "2", "--seq", "32", "--steps", "100000",
           "--save-every", "1", "--keep", "2", "--save-dir", k_dir, "--log-every", "1000"]
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 60
    while time.time() < deadline and not os.path.exists(os.path.join(k_dir, "latest")):
        time.sleep(0.05)
    time.sleep(1.3)  # saves take most of each step: this lands inside one more often than not
    os.killpg(p.pid, signal.SIGKILL)
    p.wait()
    out = train("--tp", 2, "--batch", 2, "--steps", 1, "--save-dir", k_dir, "--resume")
    check("resuming from" in out and "nothing left to train" in out,
          "after kill -9 the newest complete checkpoint loads:\n" + out)
    print("kill -9: left %s; resumed: %s" % (sorted(os.listdir(k_dir)),
                                             [l for l in out.splitlines() if "resuming" in l]))

    # ---- --sp: sequence parallel, and its sample (windows padded to a multiple of tp) ------------
    out = train("--tp", 2, "--sp", "--batch", 2, "--seq", 5, "--steps", 2, "--sample", 12)
    check("TP 2 x DP 1 (sequence parallel)" in out and "---- end of sample ----" in out,
          "--sp trains and samples with B*T = 10 over TP=2 (window 4 of seq 5):\n" + out)
    print("--sp: trained and sampled")

    # ---- bad configurations ------------------------------------------------------------------------
    def bad(args, pattern, launch=None):
        cmd = ([TPAR, "launch", "-n", str(launch), "--"] if launch else []) + [TPAR, "train", "--data", DATA] + args
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=60)
        check(p.returncode != 0 and pattern in p.stdout and "step " not in p.stdout,
              "%s: expected failure with '%s', got exit %d:\n%s" % (" ".join(args), pattern, p.returncode, p.stdout))
    bad(["--tp", "3"], "n_head 4 is not divisible by the tensor-parallel size 3")
    bad(["--tp", "2"], "the world has 3 ranks but --tp 2 x --dp 1 = 2", launch=3)
    bad(["--data", os.path.join(tmp, "missing.txt")], "missing.txt' not found")
    bad(["--model", "gpt9"], "unknown model 'gpt9'")
    bad(["--seq", "4096"], "--seq 4096 exceeds the context length 128")
    bad(["--resume"], "--resume and --save-every need --save-dir")
    bad(["--tp", "0"], "--tp expects an integer")
    bad(["--tp", "4", "--sp", "--batch", "3", "--seq", "10"], "--sp splits the --batch 3 x --seq 10 = 30 tokens")
finally:
    shutil.rmtree(tmp, ignore_errors=True)

print("test_train: %d checks, %d failed" % (checks, len(failures)))
sys.exit(1 if failures else 0)
