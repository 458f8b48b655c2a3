"""safetensors against an independent implementation written from the spec with the standard
library and numpy: Python reads what tpar wrote, and tpar reads what Python wrote.
Usage: test_io_numpy.py PATH_TO_st_sample"""
import json
import os
import struct
import subprocess
import sys
import tempfile

try:
    import numpy as np
except ImportError:
    print("skipped: numpy is not installed (scripts/deps.sh test installs it)")
    sys.exit(0)

DTYPES = {"F32": np.float32, "F64": np.float64, "F16": np.float16, "I32": np.int32, "I64": np.int64}
failures = 0


def check(cond, what):
    global failures
    if not cond:
        failures += 1
        print("FAIL:", what, file=sys.stderr)


def read_safetensors(path):
    raw = open(path, "rb").read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n].decode("utf-8"))
    data = raw[8 + n:]
    meta = header.pop("__metadata__", {})
    out, spans = {}, []
    for name, e in header.items():
        b, end = e["data_offsets"]
        dt = np.dtype(DTYPES[e["dtype"]]).newbyteorder("<")
        check(end - b == int(np.prod(e["shape"], dtype=np.int64)) * dt.itemsize, f"{name}: size matches shape")
        out[name] = np.frombuffer(data[b:end], dtype=dt).reshape(e["shape"])
        spans.append((b, end))
    spans.sort()
    check(spans[0][0] == 0 and spans[-1][1] == len(data), "tensors cover the data buffer")
    check(all(a[1] == b[0] for a, b in zip(spans, spans[1:])), "no gaps or overlaps")
    return n, out, meta


def write_safetensors(path, tensors, meta, data_order):
    """Header keys in dict order, data laid out in data_order (as the spec allows)."""
    offsets, blobs, at = {}, [], 0
    for name in data_order:
        blob = np.ascontiguousarray(tensors[name][1]).astype(tensors[name][1].dtype.newbyteorder("<")).tobytes()
        offsets[name] = (at, at + len(blob))
        blobs.append(blob)
        at += len(blob)
    header = {name: {"dtype": dt, "shape": list(arr.shape), "data_offsets": list(offsets[name])}
              for name, (dt, arr) in tensors.items()}
    header["__metadata__"] = meta
    text = json.dumps(header).encode("utf-8")
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def main():
    sample = sys.argv[1]
    with tempfile.TemporaryDirectory() as d:
        mine = os.path.join(d, "from_tpar.safetensors")
        subprocess.run([sample, "write", mine], check=True)
        n, t, meta = read_safetensors(mine)
        check(n % 8 == 0, "header length padded to a multiple of 8")
        check(meta == {"producer": "tpar"}, f"metadata {meta}")
        check(np.array_equal(t["a"], (np.arange(6, dtype=np.float32) * 1.5 - 2).reshape(2, 3)), "a (F32, by slices)")
        check(np.array_equal(t["b"], np.array([-1, 0, 1, 1 << 30], dtype=np.int32)), "b (I32)")
        check(np.array_equal(t["c"], np.array([1.0, -2.0], dtype=np.float16)), "c (F16)")
        d_ref = np.array([0.1, 0.2, 1e300, -0.0]).reshape(2, 2, 1)
        check(t["d"].tobytes() == d_ref.tobytes(), "d (F64, bit-exact, -0.0 kept)")

        theirs = os.path.join(d, "from_numpy.safetensors")
        tensors = {
            "z": ("F32", (np.arange(12, dtype=np.float32) * 0.25 - 1).reshape(3, 4)),
            "y": ("I64", np.array([[1, -2], [3, 1 << 40]], dtype=np.int64)),
            "h": ("F16", np.array([0.5, -1.0, 2.0], dtype=np.float16)),
        }
        write_safetensors(theirs, tensors, {"format": "np"}, data_order=["h", "z", "y"])
        r = subprocess.run([sample, "check", theirs])
        check(r.returncode == 0, "tpar reads the file numpy wrote")
    print(f"test_io_numpy: {failures} failed")
    sys.exit(1 if failures else 0)


main()
