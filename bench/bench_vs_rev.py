#!/usr/bin/env python3
"""bench_vs_rev: this build of tpar against another git revision of it, side by side in one run.

Builds REV (default HEAD) into a temporary directory (a detached git worktree, Release), then runs
both `tpar` binaries alternately, round by round, on the same jobs, so that a shared, noisy machine
drifts the same way for both:
  - training: gpt2-124m shapes at TP=1 and TP=2, B=8 T=256 and B=4 T=64 (tokens/s from the
    metrics lines: the mean step time after the first, untimed, step);
  - decode: `tpar generate --model gpt2-124m` (random weights, greedy) at TP=1 and TP=2 with a
    64-byte prompt: time to first token and decode tokens/s, as the program reports them.
Prints one table with both and the ratio new / old (for time to first token: new / old time).

usage: bench_vs_rev.py NEW_TPAR SOURCE_DIR [--rev REV] [--old PATH] [--rounds R] [--steps N] [--quick]
  --old PATH   use this binary as the old one instead of building REV
  --quick      only B=4 T=64 and decode
Nothing here asserts: it is a benchmark (docs/TESTING.md).
"""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

RESULT_MFU = {}  # (binary, model, tp, B, T) -> the best mean MFU the binary printed (each its own peak)
PROMPT = ("To be, or not to be: that is the question. " * 4)[:64]


def build_rev(src, rev, work):
    tree = os.path.join(work, "src")
    subprocess.run(["git", "-C", src, "worktree", "add", "--detach", tree, rev], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    bld = os.path.join(work, "build")
    log = open(os.path.join(work, "build.log"), "w")
    subprocess.run(["cmake", "-S", tree, "-B", bld, "-DCMAKE_BUILD_TYPE=Release", "-DBUILD_TESTING=OFF"],
                   check=True, stdout=log, stderr=log)
    subprocess.run(["cmake", "--build", bld, "-j", str(os.cpu_count() or 2), "--target", "tpar_cli"],
                   check=True, stdout=log, stderr=log)
    return tree, os.path.join(bld, "tpar")


def train_tps(tpar, src, work, model, tp, B, T, steps):
    """tokens/s of `tpar train`: B*T over the mean step time of the metrics lines after the first."""
    metrics = os.path.join(work, "m.jsonl")
    if os.path.exists(metrics):
        os.remove(metrics)
    cmd = [tpar, "train", "--model", model, "--tp", str(tp), "--batch", str(B), "--seq", str(T),
           "--steps", str(steps + 1), "--warmup", "1", "--val-every", "0", "--val-batches", "1",
           "--data", os.path.join(src, "data", "tinyshakespeare.txt"), "--metrics", metrics]
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if r.returncode != 0:
        sys.exit("bench_vs_rev: %s failed:\n%s" % (" ".join(cmd), r.stdout[-3000:]))
    rows = [json.loads(l) for l in open(metrics) if l.strip()]
    rows = [x for x in rows if "ms" in x][1:]
    ms = sum(x["ms"] for x in rows) / len(rows)
    mfu = sum(x.get("mfu", 0.0) for x in rows) / len(rows)
    RESULT_MFU[(tpar, model, tp, B, T)] = max(mfu, RESULT_MFU.get((tpar, model, tp, B, T), 0.0))
    return B * T * 1e3 / ms


def decode(tpar, tp, tokens):
    """(time to first token in ms, decode tokens/s) as `tpar generate` reports them on stderr."""
    cmd = [tpar, "generate", "--model", "gpt2-124m", "--tp", str(tp), "--prompt", PROMPT,
           "--tokens", str(tokens), "--temperature", "0"]
    r = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    m1 = re.search(r"time to first token ([0-9.]+)", r.stderr)
    m2 = re.search(r" tokens, ([0-9.]+)", r.stderr)
    if r.returncode != 0 or not m1 or not m2:
        sys.exit("bench_vs_rev: %s failed:\n%s" % (" ".join(cmd), r.stderr[-3000:]))
    return float(m1.group(1)), float(m2.group(1))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("new")
    ap.add_argument("src")
    ap.add_argument("--rev", default="HEAD")
    ap.add_argument("--old")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--steps", type=int, default=2, help="timed training steps per run (after 1 untimed)")
    ap.add_argument("--tokens", type=int, default=64, help="decoded tokens per generate run")
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args()

    work = tempfile.mkdtemp(prefix="tpar_bench_rev.")
    tree = None
    try:
        if a.old:
            old, label = a.old, a.old
        else:
            print("bench_vs_rev: building %s ..." % a.rev, flush=True)
            tree, old = build_rev(a.src, a.rev, work)
            label = subprocess.run(["git", "-C", a.src, "rev-parse", "--short", a.rev], stdout=subprocess.PIPE,
                                   text=True).stdout.strip()
        jobs = []
        shapes = [(4, 64)] if a.quick else [(8, 256), (4, 64)]
        for B, T in shapes:
            for tp in (1, 2):
                jobs.append(("train gpt2-124m TP=%d B=%d T=%d tok/s" % (tp, B, T),
                             lambda b, tp=tp, B=B, T=T: train_tps(b, a.src, work, "gpt2-124m", tp, B, T, a.steps)))
        for tp in (1, 2):
            jobs.append(("decode gpt2-124m TP=%d" % tp, lambda b, tp=tp: decode(b, tp, a.tokens)))

        best = {}
        for rnd in range(a.rounds):
            for name, fn in jobs:
                for who, binary in (("old", old), ("new", a.new)):
                    v = fn(binary)
                    print("  round %d %-40s %s %s" % (rnd + 1, name, who, v), flush=True)
                    k = (name, who)
                    if isinstance(v, tuple):  # decode: best = lowest ttft, highest tok/s
                        p = best.get(k, (float("inf"), 0.0))
                        best[k] = (min(p[0], v[0]), max(p[1], v[1]))
                    else:
                        best[k] = max(best.get(k, 0.0), v)

        print("\nbench_vs_rev: new = %s, old = %s; best of %d interleaved rounds" % (a.new, label, a.rounds))
        print("%-42s %12s %12s %9s" % ("measure", "old", "new", "new/old"))
        for name, _ in jobs:
            o, n = best[(name, "old")], best[(name, "new")]
            if isinstance(o, tuple):
                print("%-42s %12.1f %12.1f %8.2fx" % (name + " ttft ms", o[0], n[0], n[0] / o[0]))
                print("%-42s %12.2f %12.2f %8.2fx" % (name + " tok/s", o[1], n[1], n[1] / o[1]))
            else:
                print("%-42s %12.1f %12.1f %8.2fx" % (name, o, n, n / o))
        print("\nMFU as each binary printed it (the new one against the machine's best GEMM rate x cores used;")
        print("the old one against its own OpenBLAS sgemm):")
        for (b, model, tp, B, T), v in sorted(RESULT_MFU.items(), key=lambda kv: (kv[0][2:], kv[0][0])):
            print("  %-4s %s TP=%d B=%d T=%d: %5.1f%%" % ("new" if b == a.new else "old", model, tp, B, T, 100 * v))
    finally:
        if tree:
            subprocess.run(["git", "-C", a.src, "worktree", "remove", "--force", tree],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
