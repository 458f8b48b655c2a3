"""A headless Chromium screenshot of a `tpar report` page is not blank and shows the charts.

Two short real runs (TP=1 and TP=2) are drawn on one page; Debian's `chromium` renders it to a
PNG at 1200x3000; the PNG is decoded here (zlib and the PNG row filters, standard library only)
and must have: a good share of non-white pixels (text, axes, gridlines, lines: measured pages
have ~4-8%; at least 1% is asked), many distinct colours, and pixels of the two runs' series
colours (#1f77b4 and #d62728, the page's first two palette entries) in quantity, which only the
drawn polylines and legend swatches give. Skipped, with the reason, when chromium is absent or
cannot start here.
"""
import os
import shutil
import struct
import subprocess
import sys
import tempfile
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


def skip(why):
    print("skipped: %s" % why, flush=True)
    sys.exit(0)


def decode_png(path):
    """Returns (width, height, channels, rows as bytes) of an 8-bit RGB or RGBA PNG."""
    with open(path, "rb") as f:
        data = f.read()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG")
    pos, idat, w = 8, [], None
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        if kind == b"IHDR":
            w, h, depth, ctype, _, _, interlace = struct.unpack(">IIBBBBB", body)
            if depth != 8 or ctype not in (2, 6) or interlace:
                raise ValueError("PNG depth %d colour type %d interlace %d not handled" % (depth, ctype, interlace))
            ch = 3 if ctype == 2 else 4
        elif kind == b"IDAT":
            idat.append(body)
        pos += 12 + n
    raw = zlib.decompress(b"".join(idat))
    stride = w * ch
    rows, prev = [], bytearray(stride)
    for y in range(h):
        f, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        if f == 1:
            for i in range(ch, stride):
                line[i] = (line[i] + line[i - ch]) & 255
        elif f == 2:
            line = bytearray((a + b) & 255 for a, b in zip(line, prev))
        elif f == 3:
            for i in range(stride):
                left = line[i - ch] if i >= ch else 0
                line[i] = (line[i] + ((left + prev[i]) >> 1)) & 255
        elif f == 4:
            for i in range(stride):
                a = line[i - ch] if i >= ch else 0
                b, c = prev[i], prev[i - ch] if i >= ch else 0
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(bytes(line))
        prev = line
    return w, h, ch, rows


chromium = shutil.which("chromium") or shutil.which("chromium-browser")
if not chromium:
    skip("chromium not found (Debian package chromium, in scripts/deps.sh test)")

tmp = tempfile.mkdtemp(prefix="tpar_test_shot_")
try:
    runs = []
    for tp in (1, 2):
        m = os.path.join(tmp, "tp%d.jsonl" % tp)
        p = subprocess.run([TPAR, "train", "--model", "tiny", "--data", DATA, "--seq", "32", "--batch", "4",
                            "--steps", "16", "--val-every", "4", "--val-batches", "2", "--log-every", "8",
                            "--tp", str(tp), "--metrics", m], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True, errors="replace", timeout=200)
        check(p.returncode == 0, "train TP=%d: exit %d\n%s" % (tp, p.returncode, p.stdout))
        runs.append(m)
    page = os.path.join(tmp, "report.html")
    p = subprocess.run([TPAR, "report"] + runs + ["-o", page], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       text=True, timeout=60)
    check(p.returncode == 0, "report: exit %d\n%s" % (p.returncode, p.stdout))
    if p.returncode != 0:
        raise SystemExit(1)
    png = os.path.join(tmp, "out.png")
    profile = tempfile.mkdtemp(prefix="chromium_", dir=tmp)
    try:
        c = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                            "--disable-background-networking", "--disable-component-update", "--disable-sync",
                            "--user-data-dir=" + profile, "--screenshot=" + png, "--window-size=1200,3000",
                            "file://" + page], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           errors="replace", timeout=120)
    except subprocess.TimeoutExpired:
        skip("chromium did not finish a screenshot within 120 s here")
    if c.returncode != 0 or not os.path.exists(png):
        skip("chromium cannot start here (exit %d): %s" % (c.returncode, c.stdout.strip().splitlines()[-1:]))
    w, h, ch, rows = decode_png(png)
    check((w, h) == (1200, 3000), "screenshot size %dx%d" % (w, h))
    total = nonwhite = blue = red = 0
    colours = set()
    for y in range(0, h, 2):  # every other row and column: plenty for statistics
        row = rows[y]
        for x in range(0, w, 2):
            r, g, b = row[x * ch], row[x * ch + 1], row[x * ch + 2]
            total += 1
            if r < 235 or g < 235 or b < 235:
                nonwhite += 1
                colours.add((r >> 3, g >> 3, b >> 3))
            if abs(r - 0x1f) < 40 and abs(g - 0x77) < 40 and abs(b - 0xb4) < 40:
                blue += 1
            if abs(r - 0xd6) < 40 and abs(g - 0x27) < 40 and abs(b - 0x28) < 40:
                red += 1
    frac = nonwhite / total
    print("screenshot %dx%d: %.1f%% non-white, %d colours, %d run-1 (blue) and %d run-2 (red) pixels (sampled)"
          % (w, h, 100 * frac, len(colours), blue, red))
    check(frac > 0.01, "not blank: %.2f%% non-white pixels" % (100 * frac))
    check(len(colours) >= 20, "several distinct colours: %d" % len(colours))
    check(blue > 300 and red > 300, "both runs' series drawn: %d blue, %d red pixels" % (blue, red))
finally:
    shutil.rmtree(tmp, ignore_errors=True)

print("test_report_screenshot: %d checks, %d failed" % (checks, len(failures)))
sys.exit(1 if failures else 0)
