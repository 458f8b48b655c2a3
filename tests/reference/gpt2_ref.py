#!/usr/bin/python3
"""An independent GPT-2 in plain PyTorch that checks tpar's math (issue #6).

Nothing here is shared with tpar's C code: the model is built from torch's own
nn.LayerNorm, F.gelu(approximate="tanh"), softmax attention, F.cross_entropy and
torch.optim.AdamW; safetensors files are read and written with the standard library's
json and numpy (no `safetensors` package). Test-only: tpar never needs Python or torch.

Checkpoints follow docs/CHECKPOINT.md (Hugging Face GPT-2 names, Conv1D [in, out] weights,
tied head, no "transformer." prefix, config in __metadata__); see docs/REFERENCE.md.

Modes
  init      write a random-init model in tpar's format (model.safetensors, or with --ckpt-dir
            a checkpoint tpar train can --resume: DIR/step_XXXXXXXX/{model.safetensors,
            optim.safetensors (zero moments), state.json, manifest.json})
  batch     write a random token batch (safetensors: inputs, targets; I32 (B, T))
  ref       for a model and a batch, write reference values (safetensors):
              logits (B, T, V), loss (1), grad.<param> for every parameter (HF layout),
              train.loss / train.grad_norm / train.lr (N): N AdamW steps on the batch
  periodic  write a byte text file of period T and the batch tpar train's loader draws from it
  compare   compare a `tpar train --metrics` file with a reference's per-step values
  selftest  checks of this script itself: finite differences of the loss, an
            independent numpy forward written after Hugging Face's modeling_gpt2,
            torch's AdamW against tpar's documented update formula, file round trips

Exit status: 0 on success, 1 on a failed self-check, 2 on bad input (with a message).
Without torch every mode prints "skipped: python3-torch not installed" and exits 0
(scripts/deps.sh test installs Debian's python3-torch).
"""
import argparse
import json
import math
import os
import struct
import sys
import tempfile
import zlib

# A missing package is a skip (CTest reports it as such), never a pass. torch first: it is
# the one CI may lack (Debian's python3-torch pulls in python3-numpy).
try:
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
except ImportError:
    print("skipped: python3-torch not installed")
    sys.exit(0)
try:
    import numpy as np
except ImportError:
    print("skipped: python3-numpy not installed")
    sys.exit(0)

LN_EPS = 1e-5
ST_DTYPES = {"F32": np.float32, "F64": np.float64, "I32": np.int32, "I64": np.int64,
             "F16": np.float16, "U8": np.uint8}


class InputError(Exception):
    """Bad input file or arguments: reported as one line, exit status 2."""


# ------------------------------------------------------------------ safetensors (stdlib + numpy)

def st_read(path):
    """Returns (tensors: name -> numpy array, metadata: dict of str). Checks what a reader
    must: header length, JSON, dtypes, sizes, offsets inside the buffer."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise InputError("%s: %s" % (path, e.strerror))
    if len(raw) < 8:
        raise InputError("%s: %d bytes, too short for a safetensors header" % (path, len(raw)))
    (n,) = struct.unpack("<Q", raw[:8])
    if n > len(raw) - 8:
        raise InputError("%s: header length %d goes past the end of the file (truncated?)" % (path, n))
    try:
        header = json.loads(raw[8:8 + n].decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise InputError("%s: header is not valid JSON: %s" % (path, e))
    data = raw[8 + n:]
    meta = header.pop("__metadata__", {}) or {}
    out = {}
    for name, e in header.items():
        if e.get("dtype") not in ST_DTYPES:
            raise InputError("%s: tensor '%s': dtype %r not supported here" % (path, name, e.get("dtype")))
        dt = np.dtype(ST_DTYPES[e["dtype"]]).newbyteorder("<")
        shape = [int(s) for s in e["shape"]]
        b, end = (int(x) for x in e["data_offsets"])
        if not (0 <= b <= end <= len(data)) or end - b != int(np.prod(shape, dtype=np.int64)) * dt.itemsize:
            raise InputError("%s: tensor '%s': data_offsets [%d, %d] do not fit shape %s of %s in a %d-byte "
                             "buffer" % (path, name, b, end, shape, e["dtype"], len(data)))
        out[name] = np.frombuffer(data, dtype=dt, count=(end - b) // dt.itemsize, offset=b).reshape(shape)
    return out, meta


def st_write(path, tensors, meta):
    """tensors: list of (name, numpy array) in file order. Writes as tpar does: compact JSON,
    __metadata__ first, padded with spaces to a multiple of 8, tensors packed without gaps.
    Atomic (temporary file + rename), like every checkpoint write in tpar."""
    header = {"__metadata__": {str(k): str(v) for k, v in meta.items()}}
    names = {np.dtype(v).str[1:]: k for k, v in ST_DTYPES.items()}
    blobs, at = [], 0
    for name, arr in tensors:
        arr = np.ascontiguousarray(arr)
        code = arr.dtype.str[1:]
        if code not in names:
            raise InputError("tensor '%s': dtype %s cannot be written" % (name, arr.dtype))
        blob = arr.astype(arr.dtype.newbyteorder("<"), copy=False).tobytes()
        header[name] = {"dtype": names[code], "shape": list(arr.shape), "data_offsets": [at, at + len(blob)]}
        blobs.append(blob)
        at += len(blob)
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for blob in blobs:
            f.write(blob)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


# ------------------------------------------------------------------ the model

class Config:
    KEYS = ("n_layer", "n_head", "n_embd", "vocab_size", "n_positions")

    def __init__(self, n_layer, n_head, n_embd, vocab_size, n_positions):
        self.n_layer, self.n_head, self.n_embd = int(n_layer), int(n_head), int(n_embd)
        self.vocab_size, self.n_positions = int(vocab_size), int(n_positions)
        for k in self.KEYS:
            if getattr(self, k) < 1:
                raise InputError("config: %s = %d must be >= 1" % (k, getattr(self, k)))
        if self.n_embd % self.n_head:
            raise InputError("config: n_embd %d is not divisible by n_head %d" % (self.n_embd, self.n_head))

    @classmethod
    def from_meta(cls, meta, path):
        missing = [k for k in cls.KEYS if k not in meta]
        if missing:
            raise InputError("%s: __metadata__ lacks %s (a tpar-gpt2 checkpoint has %s)"
                             % (path, ", ".join(missing), ", ".join(cls.KEYS)))
        eps = float(meta.get("layer_norm_epsilon", LN_EPS))
        if eps != LN_EPS:
            raise InputError("%s: layer_norm_epsilon %g, this reference uses %g" % (path, eps, LN_EPS))
        return cls(*(int(meta[k]) for k in cls.KEYS))

    def meta(self):
        m = {k: str(getattr(self, k)) for k in self.KEYS}
        m["layer_norm_epsilon"] = "1e-05"
        m["format"] = "tpar-gpt2"
        return m

    def shapes(self):
        """Parameter names and global shapes, in the order of the names list of docs/CHECKPOINT.md."""
        V, C, T = self.vocab_size, self.n_embd, self.n_positions
        out = [("wte.weight", (V, C)), ("wpe.weight", (T, C))]
        for i in range(self.n_layer):
            p = "h.%d." % i
            out += [(p + "ln_1.weight", (C,)), (p + "ln_1.bias", (C,)),
                    (p + "attn.c_attn.weight", (C, 3 * C)), (p + "attn.c_attn.bias", (3 * C,)),
                    (p + "attn.c_proj.weight", (C, C)), (p + "attn.c_proj.bias", (C,)),
                    (p + "ln_2.weight", (C,)), (p + "ln_2.bias", (C,)),
                    (p + "mlp.c_fc.weight", (C, 4 * C)), (p + "mlp.c_fc.bias", (4 * C,)),
                    (p + "mlp.c_proj.weight", (4 * C, C)), (p + "mlp.c_proj.bias", (C,))]
        out += [("ln_f.weight", (C,)), ("ln_f.bias", (C,))]
        return out


class Conv1D(nn.Module):
    """Hugging Face GPT-2's Conv1D: weight stored [in, out], y = x @ W + b."""

    def __init__(self, nin, nout):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(nin, nout))
        self.bias = nn.Parameter(torch.empty(nout))

    def forward(self, x):
        return torch.addmm(self.bias, x.reshape(-1, x.shape[-1]), self.weight).view(*x.shape[:-1], -1)


class Attention(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.n_head = cfg.n_head
        self.c_attn = Conv1D(cfg.n_embd, 3 * cfg.n_embd)
        self.c_proj = Conv1D(cfg.n_embd, cfg.n_embd)

    def forward(self, x):
        B, T, C = x.shape
        hd = C // self.n_head
        q, k, v = self.c_attn(x).split(C, dim=2)        # each (B, T, C); head h = columns h*hd..
        q, k, v = (t.view(B, T, self.n_head, hd).transpose(1, 2) for t in (q, k, v))  # (B, nh, T, hd)
        att = (q @ k.transpose(-2, -1)) / math.sqrt(hd)  # (B, nh, T, T)
        mask = torch.ones(T, T, dtype=torch.bool, device=x.device).triu(1)
        att = att.masked_fill(mask, float("-inf")).softmax(dim=-1)
        y = (att @ v).transpose(1, 2).reshape(B, T, C)
        return self.c_proj(y)


class MLP(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.c_fc = Conv1D(cfg.n_embd, 4 * cfg.n_embd)
        self.c_proj = Conv1D(4 * cfg.n_embd, cfg.n_embd)

    def forward(self, x):
        return self.c_proj(F.gelu(self.c_fc(x), approximate="tanh"))


class Block(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.ln_1 = nn.LayerNorm(cfg.n_embd, eps=LN_EPS)
        self.attn = Attention(cfg)
        self.ln_2 = nn.LayerNorm(cfg.n_embd, eps=LN_EPS)
        self.mlp = MLP(cfg)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT2(nn.Module):
    """Pre-LN GPT-2; parameter names are exactly the checkpoint names (named_parameters)."""

    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.wte = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        self.wpe = nn.Embedding(cfg.n_positions, cfg.n_embd)
        self.h = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.ln_f = nn.LayerNorm(cfg.n_embd, eps=LN_EPS)

    def forward(self, idx, targets=None):
        B, T = idx.shape
        if T > self.cfg.n_positions:
            raise InputError("batch has T = %d tokens per row, the model only %d positions" % (T, self.cfg.n_positions))
        x = self.wte(idx) + self.wpe(torch.arange(T, device=idx.device))
        for block in self.h:
            x = block(x)
        logits = self.ln_f(x) @ self.wte.weight.t()    # tied head, (B, T, V)
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.reshape(B * T, -1), targets.reshape(B * T))
        return logits, loss

    def load(self, tensors, path):
        want = dict(self.cfg.shapes())
        extra = sorted(set(tensors) - set(want))
        if extra:
            raise InputError("%s: unexpected tensor '%s' (not a tpar-gpt2 parameter)" % (path, extra[0]))
        with torch.no_grad():
            for name, p in self.named_parameters():
                if name not in tensors:
                    raise InputError("%s: tensor '%s' is missing" % (path, name))
                a = tensors[name]
                if tuple(a.shape) != tuple(p.shape) or a.dtype != np.float32:
                    raise InputError("%s: tensor '%s' is %s %s, expected F32 %s"
                                     % (path, name, a.dtype, list(a.shape), list(p.shape)))
                p.copy_(torch.from_numpy(np.array(a, dtype=np.float32)))

    def init_gpt2(self, gen, perturb, std=0.02):
        """GPT-2's init (N(0, std = 0.02), residual projections std/sqrt(2L), zero biases, unit
        norms). perturb: biases and norm parameters get noise too, so that a loader that
        drops or misplaces them cannot go unnoticed. A test passes a larger std so that
        activations reach the range where the nonlinearities differ from their neighbours
        (GELU tanh vs erf differ by up to 5e-4 near |x| = 2.7, by 3e-8 at the ~0.1 of GPT-2's init)."""
        std_res = std / math.sqrt(2 * self.cfg.n_layer)
        with torch.no_grad():
            for name, p in self.named_parameters():
                if name.endswith("c_proj.weight"):
                    p.normal_(0.0, std_res, generator=gen)
                elif p.dim() == 2:
                    p.normal_(0.0, std, generator=gen)
                elif ".ln" in name or name.startswith("ln_"):
                    p.fill_(1.0 if name.endswith("weight") else 0.0)
                    if perturb:
                        p.add_(torch.randn(p.shape, generator=gen) * 0.1)
                else:
                    p.zero_()
                    if perturb:
                        p.add_(torch.randn(p.shape, generator=gen) * 0.02)


def load_model(path, dtype):
    tensors, meta = st_read(path)
    if meta.get("format") not in ("tpar-gpt2", None):
        raise InputError("%s: __metadata__ format is %r, expected 'tpar-gpt2'" % (path, meta.get("format")))
    cfg = Config.from_meta(meta, path)
    model = GPT2(cfg)
    model.load(tensors, path)
    return model.to(dtype), meta


def load_batch(path):
    t, _ = st_read(path)
    for k in ("inputs", "targets"):
        if k not in t:
            raise InputError("%s: batch file lacks tensor '%s' (inputs and targets, I32 (B, T))" % (path, k))
    inp, tgt = (np.asarray(t[k], dtype=np.int64) for k in ("inputs", "targets"))
    if inp.ndim != 2 or inp.shape != tgt.shape:
        raise InputError("%s: inputs %s and targets %s must both be (B, T)" % (path, list(inp.shape), list(tgt.shape)))
    return torch.from_numpy(inp), torch.from_numpy(tgt)


# ------------------------------------------------------------------ training (tpar's definitions)

def lr_at(step, a):
    """Learning rate of step `step` (1-based), as tpar defines it: linear warmup over `warmup`
    steps, then cosine from lr down to lr * min_lr_frac at step `decay_steps` (the run's total;
    constant lr if that is not past the warmup)."""
    if a.warmup > 0 and step <= a.warmup:
        return a.lr * step / a.warmup
    if a.decay_steps <= a.warmup:
        return a.lr
    frac = min(1.0, (step - a.warmup) / (a.decay_steps - a.warmup))
    lo = a.lr * a.min_lr_frac
    return lo + 0.5 * (a.lr - lo) * (1.0 + math.cos(math.pi * frac))


def make_optimizer(model, a):
    """torch's AdamW; weight decay on matrices (wte, wpe, Conv1D weights), not on norms and biases."""
    decay = [p for _, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for _, p in model.named_parameters() if p.dim() < 2]
    return torch.optim.AdamW([{"params": decay, "weight_decay": a.weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}],
                             lr=a.lr, betas=(a.beta1, a.beta2), eps=a.eps)


def clip_grads(model, max_norm):
    """Global L2 norm over every gradient; scaled by max_norm / norm when norm > max_norm
    (max_norm <= 0: no clipping). Returns the norm before clipping."""
    grads = [p.grad for p in model.parameters()]
    norm = torch.sqrt(sum((g.double() ** 2).sum() for g in grads)).item()
    if max_norm > 0 and norm > max_norm:
        for g in grads:
            g.mul_(max_norm / norm)
    return norm


def train_steps(model, inp, tgt, a):
    opt = make_optimizer(model, a)
    losses, norms, lrs = [], [], []
    for step in range(1, a.steps + 1):
        lr = lr_at(step, a)
        for g in opt.param_groups:
            g["lr"] = lr
        opt.zero_grad(set_to_none=False)
        _, loss = model(inp, tgt)
        loss.backward()
        norms.append(clip_grads(model, a.grad_clip))
        opt.step()
        losses.append(loss.item())
        lrs.append(lr)
    return losses, norms, lrs


# ------------------------------------------------------------------ modes

def cmd_init(a):
    cfg = Config(a.layers, a.heads, a.embd, a.vocab, a.ctx)
    gen = torch.Generator().manual_seed(a.seed)
    model = GPT2(cfg)
    model.init_gpt2(gen, a.perturb, a.std)
    tensors = [(n, p.detach().numpy().astype(np.float32)) for n, p in model.named_parameters()]
    if a.ckpt_dir:
        step_dir = os.path.join(a.ckpt_dir, "step_%08d" % a.step)
        tmp_dir = step_dir + ".tmp"
        os.makedirs(tmp_dir, exist_ok=True)
        st_write(os.path.join(tmp_dir, "model.safetensors"), tensors, cfg.meta())
        # A fresh optimizer: zero AdamW moments, named <param>.exp_avg / .exp_avg_sq as tpar saves them.
        st_write(os.path.join(tmp_dir, "optim.safetensors"),
                 [(n + sfx, np.zeros_like(t)) for n, t in tensors for sfx in (".exp_avg", ".exp_avg_sq")],
                 cfg.meta())
        # The training state tpar's resume reads (src/train/train.c): the step and the data
        # loader's position; u64 values as decimal strings (docs/CHECKPOINT.md section 4).
        state = {"step": a.step, "seed": str(a.seed), "data.seed": str(a.seed), "data.pos": "0"}
        state.update({"config." + k: getattr(cfg, k) for k in Config.KEYS})
        with open(os.path.join(tmp_dir, "state.json"), "w") as f:
            json.dump(state, f)
        write_manifest(tmp_dir, a.step)
        if os.path.exists(step_dir):
            raise InputError("%s already exists" % step_dir)
        os.rename(tmp_dir, step_dir)
        with open(os.path.join(a.ckpt_dir, "latest"), "w") as f:
            f.write("step_%08d\n" % a.step)
        print("wrote", step_dir)
    else:
        st_write(a.out, tensors, cfg.meta())
        print("wrote", a.out)
    if getattr(a, "batch_out", None):
        write_batch(a.batch_out, a.B, a.T, a.vocab, a.batch_seed)


def write_manifest(ckpt_dir, step):
    """docs/CHECKPOINT.md section 3: every file with its size and zlib crc32."""
    files = {}
    for name in sorted(os.listdir(ckpt_dir)):
        path = os.path.join(ckpt_dir, name)
        if name == "manifest.json" or not os.path.isfile(path):
            continue
        with open(path, "rb") as f:
            blob = f.read()
        files[name] = {"size": len(blob), "crc32": zlib.crc32(blob)}
    with open(os.path.join(ckpt_dir, "manifest.json"), "w") as f:
        json.dump({"format": "tpar-checkpoint", "version": 1, "step": step, "files": files}, f)


def write_batch(path, B, T, vocab, seed):
    """B rows of T + 1 uniform random tokens: inputs are the first T, targets the last T."""
    if B < 1 or T < 1 or vocab < 1:
        raise InputError("batch: B, T and vocab must be >= 1")
    gen = torch.Generator().manual_seed(seed)
    toks = torch.randint(0, vocab, (B, T + 1), generator=gen, dtype=torch.int64)
    st_write(path, [("inputs", toks[:, :-1].numpy().astype(np.int32)),
                    ("targets", toks[:, 1:].numpy().astype(np.int32))], {"format": "tpar-batch"})
    print("wrote", path)


def cmd_batch(a):
    write_batch(a.out, a.B, a.T, a.vocab, a.seed)


def cmd_periodic(a):
    """A byte text file whose tokens repeat with period T, and the batch tpar's loader then
    draws whatever its shuffle, DP rank or step: every window of T + 1 tokens starting at a
    multiple of T is the same row (inputs row[0..T-1], targets row[1..T-1] + row[0]). This
    lets `tpar train` itself (loader, DP reduction, clipping, AdamW, schedule) be compared
    with the reference on a known batch."""
    gen = torch.Generator().manual_seed(a.seed)
    row = torch.randint(ord(" "), ord("~") + 1, (a.T,), generator=gen, dtype=torch.int64).numpy()
    with open(a.data_out, "wb") as f:
        f.write(row.astype(np.uint8).tobytes() * a.repeat)
    inp = np.tile(row, (a.B, 1)).astype(np.int32)
    st_write(a.batch_out, [("inputs", inp), ("targets", np.roll(inp, -1, axis=1))], {"format": "tpar-batch"})
    print("wrote %s (%d bytes, period %d) and %s" % (a.data_out, a.T * a.repeat, a.T, a.batch_out))


def cmd_compare(a):
    """Compares `tpar train --metrics` JSON-lines files (one per run) with the reference's
    train.* values: per step |tpar - torch| <= rtol * |torch| for loss and grad_norm, and
    1e-6 for lr (the reference stores it as float32)."""
    ref, _ = st_read(a.ref)
    n, bad, worst = len(ref["train.loss"]), 0, 0.0
    for path in a.metrics:
        try:
            with open(path) as f:
                rows = [json.loads(line) for line in f if line.strip()]
        except (OSError, ValueError) as e:
            raise InputError("%s: %s" % (path, e))
        rows = [r for r in rows if "loss" in r and "step" in r]
        if [r["step"] for r in rows] != list(range(1, n + 1)):
            raise InputError("%s has steps %s, the reference 1..%d" % (path, [r["step"] for r in rows], n))
        print("%s:" % os.path.basename(path))
        for i, r in enumerate(rows):
            line = "  step %d" % r["step"]
            for key, tol in (("loss", a.rtol), ("grad_norm", a.rtol), ("lr", 1e-6)):
                want, got = float(ref["train." + key][i]), float(r[key])
                rel = abs(got - want) / abs(want)
                bad += not rel <= tol
                worst = max(worst, rel) if key != "lr" else worst
                line += " | %s %.7f (torch %.7f, rel err %.1e)%s" % (key, got, want, rel,
                                                                       "" if rel <= tol else " FAIL")
            print(line)
    print("compare: %d runs of %d steps, worst relative error %.2g (rtol %g), %d mismatches"
          % (len(a.metrics), n, worst, a.rtol, bad))
    return 1 if bad else 0


def resolve_model_path(path):
    """A model.safetensors file, a checkpoint directory step_N, or a save dir holding step_N."""
    if os.path.isdir(path):
        if os.path.isfile(os.path.join(path, "model.safetensors")):
            return os.path.join(path, "model.safetensors")
        steps = sorted(d for d in os.listdir(path) if d.startswith("step_") and not d.endswith(".tmp"))
        if not steps:
            raise InputError("%s: no model.safetensors and no step_N checkpoint in it" % path)
        return os.path.join(path, steps[-1], "model.safetensors")
    return path


def cmd_ref(a):
    dtype = torch.float64 if a.dtype == "float64" else torch.float32
    model, meta = load_model(resolve_model_path(a.model), dtype)
    inp, tgt = load_batch(a.batch)
    V = model.cfg.vocab_size
    if int(inp.min()) < 0 or int(inp.max()) >= V or int(tgt.min()) < 0 or int(tgt.max()) >= V:
        raise InputError("%s: token ids must lie in [0, %d)" % (a.batch, V))
    logits, loss = model(inp, tgt)
    loss.backward()
    out = [("logits", logits.detach().float().numpy()), ("loss", np.array([loss.item()], dtype=np.float32))]
    out += [("grad." + n, p.grad.float().numpy()) for n, p in model.named_parameters()]
    if a.steps > 0:
        losses, norms, lrs = train_steps(model, inp, tgt, a)
        out += [("train.loss", np.array(losses, dtype=np.float32)),
                ("train.grad_norm", np.array(norms, dtype=np.float32)),
                ("train.lr", np.array(lrs, dtype=np.float32))]
        if a.final_params:
            out += [("final." + n, p.detach().float().numpy()) for n, p in model.named_parameters()]
    hyper = {k: getattr(a, k) for k in ("steps", "lr", "beta1", "beta2", "eps", "weight_decay", "grad_clip",
                                        "warmup", "decay_steps", "min_lr_frac", "dtype")}
    st_write(a.out, out, dict(hyper, torch=torch.__version__, loss="%.9g" % loss.item()))
    after = ", AdamW step %d loss %.6f" % (a.steps, losses[-1]) if a.steps > 0 else ""
    print("loss %.6f%s -> %s" % (loss.item(), after, a.out))


# ------------------------------------------------------------------ self-checks

class Checks:
    def __init__(self):
        self.n = self.failed = 0

    def __call__(self, ok, what):
        self.n += 1
        if not ok:
            self.failed += 1
            print("FAIL:", what, file=sys.stderr)
        return ok


def hf_forward_numpy(params, cfg, idx):
    """GPT-2 forward in float64 numpy, written line by line after Hugging Face's
    modeling_gpt2 (GPT2Model + tied lm_head): Conv1D is x @ W + b with W [in, out],
    c_attn splits into q | k | v, heads are views of hd consecutive columns, the causal
    mask fills with the dtype's minimum before softmax, gelu_new, ln_f then x @ wte^T."""
    P = {k: np.asarray(v, dtype=np.float64) for k, v in params.items()}
    B, T = idx.shape
    C, nh = cfg.n_embd, cfg.n_head
    hd = C // nh

    def ln(x, w, b):
        mu = x.mean(-1, keepdims=True)
        var = ((x - mu) ** 2).mean(-1, keepdims=True)
        return (x - mu) / np.sqrt(var + LN_EPS) * w + b

    def conv1d(x, pre):
        return x @ P[pre + ".weight"] + P[pre + ".bias"]

    def gelu_new(x):
        return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))

    def split_heads(t):
        return t.reshape(B, T, nh, hd).transpose(0, 2, 1, 3)

    h = P["wte.weight"][idx] + P["wpe.weight"][np.arange(T)]
    causal = np.tril(np.ones((T, T), dtype=bool))
    for i in range(cfg.n_layer):
        p = "h.%d." % i
        a = ln(h, P[p + "ln_1.weight"], P[p + "ln_1.bias"])
        qkv = conv1d(a, p + "attn.c_attn")
        q, k, v = (split_heads(t) for t in np.split(qkv, 3, axis=2))
        w = q @ k.transpose(0, 1, 3, 2) / math.sqrt(hd)
        w = np.where(causal, w, np.finfo(np.float64).min)
        w = np.exp(w - w.max(-1, keepdims=True))
        w /= w.sum(-1, keepdims=True)
        y = (w @ v).transpose(0, 2, 1, 3).reshape(B, T, C)
        h = h + conv1d(y, p + "attn.c_proj")
        m = ln(h, P[p + "ln_2.weight"], P[p + "ln_2.bias"])
        h = h + conv1d(gelu_new(conv1d(m, p + "mlp.c_fc")), p + "mlp.c_proj")
    h = ln(h, P["ln_f.weight"], P["ln_f.bias"])
    return h @ P["wte.weight"].T


def cmd_selftest(a):
    ck = Checks()
    torch.manual_seed(0)
    cfg = Config(2, 2, 16, 23, 12)
    model = GPT2(cfg)
    model.init_gpt2(torch.Generator().manual_seed(1), perturb=True)
    model = model.double()
    gen = torch.Generator().manual_seed(2)
    toks = torch.randint(0, cfg.vocab_size, (3, 10), generator=gen)
    inp, tgt = toks[:, :-1], toks[:, 1:]

    # 1. the torch model against an independent numpy forward in Hugging Face's conventions
    params = {n: p.detach().numpy() for n, p in model.named_parameters()}
    logits, loss = model(inp, tgt)
    hf = hf_forward_numpy(params, cfg, inp.numpy())
    err = float(np.abs(logits.detach().numpy() - hf).max())
    ck(err < 1e-12, "logits vs numpy HF-style forward: max |diff| %.3g (float64, expect < 1e-12)" % err)
    lp = hf - hf.max(-1, keepdims=True)
    lp = lp - np.log(np.exp(lp).sum(-1, keepdims=True))
    nll = -np.take_along_axis(lp, tgt.numpy()[..., None], -1).mean()
    ck(abs(nll - loss.item()) < 1e-12, "loss %.15g vs numpy %.15g" % (loss.item(), nll))
    ck(abs(loss.item() - math.log(cfg.vocab_size)) < 1.0, "loss of a small random model near ln V")

    # causality: changing the last input token leaves the logits of earlier positions alone
    inp2 = inp.clone()
    inp2[:, -1] = (inp2[:, -1] + 1) % cfg.vocab_size
    logits2, _ = model(inp2)
    d_early = float((logits2[:, :-1] - logits[:, :-1]).abs().max())
    d_last = float((logits2[:, -1] - logits[:, -1]).abs().max())
    ck(d_early == 0.0 and d_last > 0.0, "causal: earlier logits unchanged (%.3g), last changed (%.3g)"
       % (d_early, d_last))

    # 2. finite differences of the loss against autograd, a few entries of every parameter
    model.zero_grad()
    _, loss = model(inp, tgt)
    loss.backward()
    rng = np.random.default_rng(3)
    worst = 0.0
    for name, p in model.named_parameters():
        flat, gflat = p.data.view(-1), p.grad.view(-1)
        for i in rng.choice(flat.numel(), size=min(3, flat.numel()), replace=False):
            h = 1e-5  # central differences: truncation ~h^2 = 1e-10, rounding ~1e-16 * 3 / h = 3e-11
            old = flat[i].item()
            with torch.no_grad():
                flat[i] = old + h
                lp_, = (model(inp, tgt)[1].item(),)
                flat[i] = old - h
                lm_ = model(inp, tgt)[1].item()
                flat[i] = old
            fd = (lp_ - lm_) / (2 * h)
            g = gflat[i].item()
            err = abs(fd - g) / (1e-8 + 1e-6 * abs(g))  # <= 1: within 1e-8 absolute + 1e-6 relative
            worst = max(worst, err)
            ck(err <= 1.0, "%s[%d]: finite difference %.12g, autograd %.12g" % (name, i, fd, g))
    print("finite differences: worst |fd - autograd| / (1e-8 + 1e-6 |g|) = %.3g over every parameter tensor"
          % worst)

    # 3. torch's AdamW (with our param groups and clipping) against tpar's documented update
    #    p -= lr * (m/(1-b1^t) / (sqrt(v/(1-b2^t)) + eps) + wd * p)   (include/tpar/kernels.h)
    class H:
        lr, beta1, beta2, eps, weight_decay, grad_clip = 1e-2, 0.9, 0.95, 1e-8, 0.1, 0.5
        warmup, decay_steps, min_lr_frac, steps = 2, 5, 0.1, 4
    ref = {n: p.detach().numpy().copy() for n, p in model.named_parameters()}
    m = {n: np.zeros_like(v) for n, v in ref.items()}
    v2 = {n: np.zeros_like(v) for n, v in ref.items()}
    losses, norms, lrs = train_steps(model, inp, tgt, H)
    shadow = GPT2(cfg).double()
    for t in range(1, H.steps + 1):
        with torch.no_grad():
            for n, p in shadow.named_parameters():
                p.copy_(torch.from_numpy(ref[n]))
        shadow.zero_grad()
        shadow(inp, tgt)[1].backward()
        g = {n: p.grad.numpy().copy() for n, p in shadow.named_parameters()}
        norm = math.sqrt(sum(float((x ** 2).sum()) for x in g.values()))
        ck(abs(norm - norms[t - 1]) <= 1e-9 * norm, "step %d grad norm %.12g vs %.12g" % (t, norms[t - 1], norm))
        scale = min(1.0, H.grad_clip / norm)
        lr = lr_at(t, H)
        for n in ref:
            gg = g[n] * scale
            m[n] = H.beta1 * m[n] + (1 - H.beta1) * gg
            v2[n] = H.beta2 * v2[n] + (1 - H.beta2) * gg * gg
            wd = H.weight_decay if ref[n].ndim >= 2 else 0.0
            ref[n] = ref[n] - lr * (m[n] / (1 - H.beta1 ** t) / (np.sqrt(v2[n] / (1 - H.beta2 ** t)) + H.eps)
                                    + wd * ref[n])
    err = max(float(np.abs(p.detach().numpy() - ref[n]).max()) for n, p in model.named_parameters())
    ck(err < 1e-12, "AdamW: torch vs tpar's formula, max |param diff| after %d steps %.3g" % (H.steps, err))
    ck(losses[-1] < losses[0], "training lowers the loss on a fixed batch (%.6f -> %.6f)" % (losses[0], losses[-1]))
    want_lr = [H.lr * 0.5, H.lr, None, None]
    ck(abs(lrs[0] - want_lr[0]) < 1e-15 and abs(lrs[1] - want_lr[1]) < 1e-15, "warmup lr %s" % lrs[:2])
    ck(abs(lr_at(H.decay_steps, H) - H.lr * H.min_lr_frac) < 1e-15, "cosine ends at lr * min_lr_frac")

    # 4. files: init -> ref round trip, and bad input gives a clear error
    with tempfile.TemporaryDirectory() as d:
        class I:
            layers, heads, embd, vocab, ctx, seed, perturb, step, std = 1, 2, 8, 11, 6, 5, True, 0, 0.02
            out, ckpt_dir = os.path.join(d, "m.safetensors"), os.path.join(d, "ck")
        cmd_init(I)
        I.ckpt_dir = None
        cmd_init(I)
        t1, meta = st_read(I.out)
        t2, _ = st_read(os.path.join(d, "ck", "step_00000000", "model.safetensors"))
        ck(meta["format"] == "tpar-gpt2" and meta["n_embd"] == "8", "metadata %s" % meta)
        ck(list(t1) == [n for n, _ in Config(1, 2, 8, 11, 6).shapes()], "tensors in the checkpoint order")
        ck(all(np.array_equal(t1[k], t2[k]) for k in t1), "same seed, same weights in both forms")
        with open(I.out, "rb") as f:
            (hn,) = struct.unpack("<Q", f.read(8))
        ck(hn % 8 == 0, "header padded to 8 bytes")
        man = json.load(open(os.path.join(d, "ck", "step_00000000", "manifest.json")))
        blob = open(os.path.join(d, "ck", "step_00000000", "model.safetensors"), "rb").read()
        ck(man["files"]["model.safetensors"] == {"size": len(blob), "crc32": zlib.crc32(blob)}, "manifest")
        trunc = os.path.join(d, "t.safetensors")
        with open(trunc, "wb") as f:
            f.write(blob[:-5])
        try:
            st_read(trunc)
            ck(False, "a truncated file is refused")
        except InputError as e:
            ck("wte.weight" in str(e) or "ln_f.bias" in str(e) or "truncated" in str(e), "truncation: %s" % e)
    print("selftest: %d checks, %d failed" % (ck.n, ck.failed))
    return 1 if ck.failed else 0


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="mode", required=True)
    p = sub.add_parser("init", help="write a random-init model in tpar's format")
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--embd", type=int, default=64)
    p.add_argument("--vocab", type=int, default=256)
    p.add_argument("--ctx", type=int, default=64)
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--perturb", action="store_true", help="random biases and norm parameters too")
    p.add_argument("--std", type=float, default=0.02, help="std of the weight matrices (GPT-2: 0.02)")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--out", help="model.safetensors to write")
    g.add_argument("--ckpt-dir", help="write DIR/step_XXXXXXXX/{model.safetensors, manifest.json}")
    p.add_argument("--step", type=int, default=0)
    p.add_argument("--batch-out", help="also write a random batch of --B x --T tokens (as the batch mode)")
    p.add_argument("--B", type=int, default=4)
    p.add_argument("--T", type=int, default=16)
    p.add_argument("--batch-seed", type=int, default=7)
    p = sub.add_parser("batch", help="write a random token batch")
    p.add_argument("--B", type=int, required=True)
    p.add_argument("--T", type=int, required=True)
    p.add_argument("--vocab", type=int, required=True)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--out", required=True)
    p = sub.add_parser("ref", help="reference values for a model and a batch")
    p.add_argument("--model", required=True, help="model.safetensors, or a checkpoint directory")
    p.add_argument("--batch", required=True, help="safetensors with inputs, targets (B, T)")
    p.add_argument("--out", required=True)
    p.add_argument("--dtype", choices=("float64", "float32"), default="float64",
                   help="compute precision (default float64: the reference then carries no rounding "
                        "of its own worth mentioning, and the tolerances measure tpar's float32)")
    p.add_argument("--steps", type=int, default=0, help="AdamW steps on the batch")
    # defaults: tpar's (tpar_train_config_default in src/train/train.c)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--beta1", type=float, default=0.9)
    p.add_argument("--beta2", type=float, default=0.95)
    p.add_argument("--eps", type=float, default=1e-8)
    p.add_argument("--weight-decay", type=float, default=0.1)
    p.add_argument("--grad-clip", type=float, default=1.0, help="max global grad norm (<= 0: off)")
    p.add_argument("--warmup", type=int, default=0)
    p.add_argument("--decay-steps", type=int, default=0,
                   help="the run's total steps, where the cosine ends (<= warmup: constant lr after warmup)")
    p.add_argument("--min-lr-frac", type=float, default=0.1)
    p.add_argument("--final-params", action="store_true", help="also write final.<param> after the steps")
    p = sub.add_parser("periodic", help="write data of period T and the batch tpar train draws from it")
    p.add_argument("--T", type=int, required=True)
    p.add_argument("--B", type=int, required=True)
    p.add_argument("--repeat", type=int, default=64)
    p.add_argument("--seed", type=int, default=3)
    p.add_argument("--data-out", required=True)
    p.add_argument("--batch-out", required=True)
    p = sub.add_parser("compare", help="compare tpar train --metrics with a reference's train.* values")
    p.add_argument("--ref", required=True)
    p.add_argument("--metrics", required=True, nargs="+", help="one JSON-lines file per run")
    p.add_argument("--rtol", type=float, required=True)
    sub.add_parser("selftest", help="check this script")
    a = ap.parse_args(argv)
    torch.set_num_threads(int(os.environ.get("TPAR_REF_THREADS", "1")))
    try:
        modes = {"init": cmd_init, "batch": cmd_batch, "ref": cmd_ref, "periodic": cmd_periodic,
                 "compare": cmd_compare, "selftest": cmd_selftest}
        return modes[a.mode](a) or 0
    except InputError as e:
        print("gpt2_ref: error: %s" % e, file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
