"""`tpar plan` against `tpar train` on this machine (issue #8, "validation against tpar itself").

Two steps of the `tiny` GPT (L=4, C=128, 4 heads, V=256, context 128), batch 4 x 128 tokens,
in four layouts (TP=1; TP=2; TP=2 with sequence parallelism; TP=1 x DP=2; TP=2 x DP=2), and
`tpar plan --json` for the same model, layout, batch, sequence and `--precision fp32` (tpar's
CPU setup: fp32 weights, gradients, AdamW m and v, no ZeRO). What is compared does not depend
on the hardware description or on timing, so the checks are exact up to the stated tolerance:

  memory  the planner's weights + gradients + optimizer per rank is within 15% of the bytes
          the trainer holds per rank for them (`state_bytes` of the metrics: parameters,
          gradients, AdamW m and v of the largest rank). Peak RSS of the largest rank
          (`peak_rss_bytes`) must hold at least that state (every page of the four buffers is
          touched); RSS also holds code, libraries, OpenBLAS buffers, the data set and the shm
          arena, so it is printed next to the planner's total, not bounded above.
  traffic the planner's bytes sent per GPU per step in the TP and DP groups (`comm_gb_per_gpu`,
          ring "bus" bytes) within 1% of what the trainer's collectives counted
          (`tp_bus_bytes`, `dp_bus_bytes` of rank 0, `tpar_comm_stats_t.bus_bytes`). The
          trainer adds a few scalars (the loss over DP, the squared gradient norm over TP) that
          the planner leaves out; everything else must be the same collectives on the same
          buffers, so a collective the model forgets, or one the trainer adds, fails this.

The time side (the planner's step time and communication share against the trainer's
measured ones) is a benchmark, not a test: bench/bench_plan.py (`make bench`).
"""
import json
import os
import subprocess
import sys
import tempfile

TPAR = sys.argv[1]
DATA = sys.argv[2]
failures = []

MODEL = "tiny"
SPEC = "4,128,4,256,128"  # the tiny preset: layers, hidden, heads, vocab, context (= --seq below)
BATCH, SEQ, STEPS = 4, 128, 2
# Any description will do: memory state and bytes sent do not depend on it.
HW = "a100-80g"
LAYOUTS = [(1, 1, False), (2, 1, False), (2, 1, True), (1, 2, False), (2, 2, False)]  # tp, dp, sp


def check(ok, what):
    print(("ok:   " if ok else "FAIL: ") + what, flush=True)
    if not ok:
        failures.append(what)


def train(tp, dp, sp, mf):
    cmd = [TPAR, "train", "--model", MODEL, "--data", DATA, "--tp", str(tp), "--dp", str(dp), "--batch", str(BATCH),
           "--seq", str(SEQ), "--steps", str(STEPS), "--val-every", "0", "--val-batches", "1", "--metrics", mf]
    if sp:
        cmd.append("--sp")
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=120)
    if p.returncode != 0:
        check(False, "%s: exit %d\n%s" % (" ".join(cmd), p.returncode, p.stdout))
        return None
    with open(mf) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    if len(rows) != STEPS:
        check(False, "%s wrote %d metrics lines, not %d" % (" ".join(cmd), len(rows), STEPS))
        return None
    return rows[-1]


def plan(tp, dp, sp):
    cmd = [TPAR, "plan", "--model", SPEC, "--gpus", str(tp * dp), "--gpu", HW, "--global-batch", str(BATCH * dp),
           "--micro-batch", str(BATCH), "--precision", "fp32", "--tp", str(tp), "--pp", "1", "--dp", str(dp), "--json"]
    if sp:
        cmd.append("--sp")
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=30)
    if p.returncode != 0:
        check(False, "%s: exit %d\n%s" % (" ".join(cmd), p.returncode, p.stdout))
        return None
    print("$ tpar " + " ".join(cmd[1:]))
    return json.loads(p.stdout)


def close(pred, got, rtol):
    return abs(pred - got) <= rtol * max(abs(got), 1.0)


tmp = tempfile.mkdtemp(prefix="tpar_plan_vs_train_")
try:
    for tp, dp, sp in LAYOUTS:
        name = "TP=%d DP=%d%s" % (tp, dp, " SP" if sp else "")
        row = train(tp, dp, sp, os.path.join(tmp, "tp%d_dp%d_sp%d.jsonl" % (tp, dp, sp)))
        r = plan(tp, dp, sp)
        if row is None or r is None:
            continue
        mem = r["memory_gb_per_gpu"]
        pred_state = (mem["weights"] + mem["gradients"] + mem["optimizer"]) * 1e9
        state, rss = row["state_bytes"], row["peak_rss_bytes"]
        print("%s memory per rank: planner state %.2f MB (total with activations and buffers %.1f MB) | "
              "trainer state %.2f MB | peak RSS %.1f MB" % (name, pred_state / 1e6, mem["total"] * 1e3, state / 1e6,
                                                           rss / 1e6))
        check(close(pred_state, state, 0.15), "%s: planner model state %.0f B within 15%% of the trainer's %.0f B "
              "(%+.2f%%)" % (name, pred_state, state, (pred_state / state - 1) * 100))
        check(rss >= state, "%s: peak RSS %.0f B holds the model state %.0f B" % (name, rss, state))
        sent = r["comm_gb_per_gpu"]
        for group, size in (("tp", tp), ("dp", dp)):
            pred, got = sent[group] * 1e9, row[group + "_bus_bytes"]
            check(close(pred, got, 0.01), "%s: %s bytes sent per step: planner %.0f, trainer %.0f (within 1%%)"
                  % (name, group.upper(), pred, got))
            if size > 1:
                check(got > 0, "%s: the trainer counted %s traffic" % (name, group.upper()))
finally:
    for f in os.listdir(tmp):
        os.unlink(os.path.join(tmp, f))
    os.rmdir(tmp)

if failures:
    print("%d check(s) failed" % len(failures))
    sys.exit(1)
print("all checks passed")
