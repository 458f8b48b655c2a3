"""bench_plan: `tpar plan`'s step time and communication share against `tpar train` on this
machine, side by side in one run (issue #8, "validation against tpar itself", the time side;
the exact side, memory and bytes sent, is tests/plan/test_plan_vs_train.py).

    bench_plan.py TPAR_CLI DATA [STEPS]

STEPS steps (default 8) of the `tiny` GPT (L=4, C=128, 4 heads, V=256, context 128), batch
4 x 128 tokens, at TP=1 and TP=2, then `tpar plan --precision fp32` for the same layouts on a
description of this machine measured in this run:

  TFLOPS      the trainer's MFU reference, the best per-core GEMM rate on a 1024^3 square at its
              start-up ("peak GEMM 1024^3: X GFLOP/s per core"; the better of the two runs)
  HBM-GBS     a one-core copy of 64 MiB, bytes read + written per second (the unit of the
              planner's element-wise model)
  NVLINK-GBS  tpar's own all-reduce bus bandwidth between 2 ranks at the size of the TP
              messages of this model (b s h fp32 = 256 KiB), `tpar bench comm`
  GPUS/NODE   the host's cores; MEM-GB its memory

The planner keeps its own efficiencies and NCCL's per-step latencies (8.4 + 2 x 3.4 us an
all-reduce), which are GPU figures: tpar's shm all-reduce of 8 bytes takes under 1 us.

Measured: step = median of steps 2.. (step 1 pages buffers in); communication = the share of
the step the slowest rank spent blocked in collectives (`comm_frac_critical`), as a ratio to
the rest of the step. Blocked time is transfer plus waiting for a peer that is behind, minus
what the backward's asynchronous all-reduces hide behind GEMMs; the planner counts transfer
only, and no overlap for TP. The stated bound: measured communication/computation between
predicted / 4 and 3 x predicted + 0.05. Prints, never asserts: this is a timing.
"""
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

TPAR, DATA = sys.argv[1], sys.argv[2]
STEPS = int(sys.argv[3]) if len(sys.argv) > 3 else 8
SPEC, BATCH, SEQ, HIDDEN = "4,128,4,256,128", 4, 128, 128


def run(cmd, timeout):
    # One thread per rank: the planner's device is a rank at the per-core GEMM rate.
    env = dict(os.environ, TPAR_THREADS="1")
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout, env=env)
    if p.returncode != 0:
        sys.exit("bench_plan: %s: exit %d\n%s" % (" ".join(cmd), p.returncode, p.stdout))
    return p.stdout


def train(tp, mf):
    out = run([TPAR, "train", "--model", "tiny", "--data", DATA, "--tp", str(tp), "--dp", "1", "--batch", str(BATCH),
               "--seq", str(SEQ), "--steps", str(STEPS), "--val-every", "0", "--val-batches", "1", "--metrics", mf], 300)
    sg = re.search(r"peak GEMM \d+\^3: ([0-9.]+) GFLOP/s per core", out)
    with open(mf) as f:
        rows = [json.loads(line) for line in f if line.strip()][1:]
    if not sg or not rows:
        sys.exit("bench_plan: the trainer printed no sgemm reference or wrote no metrics:\n" + out)
    crit = statistics.median(r["comm_frac_critical"] for r in rows)
    return {"gflops": float(sg.group(1)), "ms": statistics.median(r["ms"] for r in rows),
            "crit": crit, "ratio": crit / (1 - crit) if crit < 1 else float("inf"),
            "balance": statistics.median(r["balance"] for r in rows), "tp_bytes": rows[-1]["tp_bus_bytes"]}


def memcpy_gbs():
    """Best of 5 one-core copies of 64 MiB, read + written bytes per second / 1e9."""
    n = 64 << 20
    src, dst = bytearray(b"\1") * n, bytearray(n)
    dst[:] = src  # page in
    best = 0.0
    for _ in range(5):
        t = time.perf_counter()
        dst[:] = src
        best = max(best, 2 * n / (time.perf_counter() - t))
    return best / 1e9


def allreduce_busbw(nbytes):
    """tpar's shm all-reduce bus bandwidth (GB/s) at 2 ranks, best of 3 runs of `tpar bench comm`."""
    best = 0.0
    for _ in range(3):
        out = run([TPAR, "bench", "comm", "-n", "2", "--min-bytes", str(nbytes), "--max-bytes", str(nbytes),
                   "--json"], 120)
        rows = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
        best = max([best] + [r["busbw_gbs"] for r in rows])
    return best


def plan(tp, hw):
    return json.loads(run([TPAR, "plan", "--model", SPEC, "--gpus", str(tp), "--gpu", hw, "--global-batch",
                           str(BATCH), "--micro-batch", str(BATCH), "--precision", "fp32", "--tp", str(tp), "--pp",
                           "1", "--dp", "1", "--json"], 30))


tmp = tempfile.mkdtemp(prefix="tpar_bench_plan_")
try:
    meas = {tp: train(tp, os.path.join(tmp, "tp%d.jsonl" % tp)) for tp in (1, 2)}
finally:
    for f in os.listdir(tmp):
        os.unlink(os.path.join(tmp, f))
    os.rmdir(tmp)
hbm = memcpy_gbs()
msg = BATCH * SEQ * HIDDEN * 4
link = allreduce_busbw(msg)
ncores = os.cpu_count() or 1
mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1e9
tflops = max(meas[tp]["gflops"] for tp in (1, 2)) / 1e3
hw = "%.5f,%.1f,%.2f,%.2f,%.2f,%d" % (tflops, mem_gb, hbm, link, link, ncores)
pred = {tp: plan(tp, hw) for tp in (1, 2)}

print("bench_plan: tpar plan vs tpar train, tiny GPT, batch %d x %d tokens, fp32, median of steps 2-%d"
      % (BATCH, SEQ, STEPS))
print("  this machine: sgemm %.1f GFLOP/s per core, memcpy %.2f GB/s, shm all-reduce busbw %.2f GB/s at %d KiB, "
      "%d cores" % (tflops * 1e3, hbm, link, msg >> 10, ncores))
print("  $ tpar plan --model %s --gpu %s --global-batch %d --micro-batch %d --precision fp32 --tp T --pp 1 --dp 1"
      % (SPEC, hw, BATCH, BATCH))
p1, p2, m1, m2 = pred[1], pred[2], meas[1], meas[2]
tp_s = p2["time_s"]["tp_comm"]
m_comm_ms = m2["crit"] * m2["ms"]
rows = [
    ("TP=1 step (ms)", p1["step_s"] * 1e3, m1["ms"]),
    ("TP=2 step (ms)", p2["step_s"] * 1e3, m2["ms"]),
    ("TP=2 speedup", p1["step_s"] / p2["step_s"], m1["ms"] / m2["ms"]),
    ("TP=2 communication (ms/step)", tp_s * 1e3, m_comm_ms),
    ("TP=2 communication/computation", p2["comm_compute_ratio"], m2["ratio"]),
    ("TP=2 bytes sent per step (MB)", p2["comm_gb_per_gpu"]["tp"] * 1e3, m2["tp_bytes"] / 1e6),
    ("TP=2 bus GB/s while communicating", p2["comm_gb_per_gpu"]["tp"] / tp_s if tp_s else 0,
     m2["tp_bytes"] / 1e6 / m_comm_ms if m_comm_ms > 0 else float("inf")),
]
print("%-34s %10s %10s %16s" % ("", "planner", "trainer", "trainer/planner"))
for name, a, b in rows:
    print("%-34s %10.4g %10.4g %16.2f" % (name, a, b, b / a if a else float("nan")))
lo, hi = p2["comm_compute_ratio"] / 4, 3 * p2["comm_compute_ratio"] + 0.05
print("stated bound: measured communication/computation %.4f within [predicted / 4, 3 x predicted + 0.05] = "
      "[%.4f, %.4f]: %s (balance %.2f)" % (m2["ratio"], lo, hi, "yes" if lo <= m2["ratio"] <= hi else "NO", m2["balance"]))
