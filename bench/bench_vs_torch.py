#!/usr/bin/python3
"""PyTorch side of bench_vs_torch: training steps of the reference GPT-2
(tests/reference/gpt2_ref.py: same model, torch's AdamW with tpar's settings) on random
tokens, float32. Prints one line: `torch tokens_per_s=<x> ms_per_step=<y> steps=<n>`.
Threads: whatever OMP_NUM_THREADS / torch.set_num_threads give (the driver sets 2)."""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "reference"))
import gpt2_ref as ref  # noqa: E402  (prints "skipped: ..." and exits without torch)

torch = ref.torch


def main():
    ap = argparse.ArgumentParser()
    for k, d in (("layers", 12), ("heads", 12), ("embd", 768), ("vocab", 50304), ("ctx", 1024), ("B", 4),
                 ("T", 64), ("steps", 3), ("warmup", 1), ("threads", 2)):
        ap.add_argument("--" + k, type=int, default=d)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    model = ref.GPT2(ref.Config(a.layers, a.heads, a.embd, a.vocab, a.ctx))
    model.init_gpt2(torch.Generator().manual_seed(1), perturb=False)

    class H:  # tpar_train_config_default's optimizer settings
        lr, beta1, beta2, eps, weight_decay, grad_clip = 1e-3, 0.9, 0.95, 1e-8, 0.1, 1.0
    opt = ref.make_optimizer(model, H)
    toks = torch.randint(0, min(a.vocab, 256), (a.B, a.T + 1))
    inp, tgt = toks[:, :-1], toks[:, 1:]
    times = []
    for i in range(a.warmup + a.steps):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        _, loss = model(inp, tgt)
        loss.backward()
        ref.clip_grads(model, H.grad_clip)
        opt.step()
        if i >= a.warmup:
            times.append(time.perf_counter() - t0)
    ms = 1e3 * sum(times) / len(times)
    print("torch tokens_per_s=%.1f ms_per_step=%.1f steps=%d loss=%.4f threads=%d"
          % (a.B * a.T * 1e3 / ms, ms, len(times), loss.item(), torch.get_num_threads()))


if __name__ == "__main__":
    main()
