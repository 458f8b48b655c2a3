"""End-to-end tests of `tpar report` on real runs of `tpar train` (tiny model, a few steps).

  runs      TP=1 with validation every 4 steps and --report (the live page); TP=2 with a rank
            killed at step 7 under --max-restarts 1 (a restart, lost steps, the header again),
            its metrics in its --save-dir, checkpoints drawn with TPAR_PROGRESS_DELAY=0.
  page      parses as HTML (python's html.parser, tags balanced); 10 charts, one <svg> each;
            each chart draws exactly the series whose keys the metrics hold (the list below is
            written here, independently of the C table); the loss series has one point per
            step and the validation series one per validation; pixel order follows the data.
  overlay   both runs on one page: every chart has a legend entry per run and series drawn,
            the summary a row per run, the headers each run's layout and command line.
  restart   the TP=2 run's restart is marked on the 9 step-axis charts, lost steps named.
  live      `tpar train --report` left a parseable page and no .tmp file.
  progress  checkpoint saves, the resume's loads and generate's load printed progress lines on
            stderr; on a pseudo-terminal, a bar redrawn in place.
  bad       a missing file, an empty file, no run, no -o: an error that says what; a truncated
            last line and a run without validation: a page, and a warning that says so.
"""
import html.parser
import json
import os
import pty
import shutil
import subprocess
import sys
import tempfile

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


def run(args, env=None):
    e = dict(os.environ)
    e.update(env or {})
    p = subprocess.run([TPAR] + [str(a) for a in args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                       errors="replace", timeout=200, env=e)
    return p.returncode, p.stdout, p.stderr


def metrics(path):
    out = []
    with open(path) as f:
        for line in f:
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
    return out


VOID = {"meta", "br", "img", "hr", "input", "link"}


class Page(html.parser.HTMLParser):
    """Collects the charts (figure.chart), their <svg>s, polylines and legend entries, and checks
    that every element is closed in order."""

    def __init__(self):
        super().__init__()
        self.stack, self.errors, self.charts, self.svgs = [], [], {}, 0
        self.cur, self.rows, self.restarts, self.in_summary = None, 0, 0, False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag not in VOID:
            self.stack.append(tag)
        self.element(tag, a)

    def handle_startendtag(self, tag, attrs):
        self.element(tag, dict(attrs))

    def element(self, tag, a):
        if tag == "svg":
            self.svgs += 1
        if tag == "figure" and "chart" in a.get("class", ""):
            self.cur = a["data-chart"]
            self.charts[self.cur] = {"svg": 0, "series": [], "legend": [], "restarts": 0}
        c = self.charts.get(self.cur)
        if c is not None:
            if tag == "svg" and "viewbox" in a:
                c["svg"] += 1
            if tag == "polyline" and a.get("class") == "series":
                pts = [tuple(map(float, p.split(","))) for p in a["points"].split()]
                c["series"].append((int(a["data-run"]), a["data-series"], pts))
            if tag == "li" and a.get("class") == "legend-entry":
                c["legend"].append((int(a["data-run"]), a["data-series"]))
            if tag == "g" and a.get("class") == "restart":
                c["restarts"] += 1
        if tag == "table" and a.get("class") == "summary":
            self.in_summary = True
        if tag == "tr" and self.in_summary and "data-run" in a:
            self.rows += 1

    def handle_endtag(self, tag):
        if tag in VOID:
            return
        if not self.stack or self.stack[-1] != tag:
            self.errors.append("</%s> closes <%s>" % (tag, self.stack[-1] if self.stack else "nothing"))
        else:
            self.stack.pop()
        if tag == "figure":
            self.cur = None
        if tag == "table":
            self.in_summary = False


def parse(path):
    with open(path, encoding="utf-8") as f:
        text = f.read()
    p = Page()
    p.feed(text)
    p.close()
    check(not p.errors and not p.stack, "%s: well-formed (errors %s, unclosed %s)" % (path, p.errors[:3], p.stack))
    check(text.startswith("<!DOCTYPE html>"), "%s: a doctype" % path)
    check("<script" not in text and "<link" not in text and "@import" not in text and "url(" not in text,
          "%s: no script, no external resource" % path)
    return p, text


# What each chart draws: x axis and the metrics keys of its series (docs/REPORT.md).
CHARTS = {
    "loss-step": ("step", ["loss", "val_loss"]),
    "loss-tokens": ("tokens", ["loss", "val_loss"]),
    "throughput": ("step", ["tokens_per_s"]),
    "mfu": ("step", ["mfu"]),
    "comm": ("step", ["comm_frac_tp", "comm_frac_dp", "comm_frac_pp", "comm_frac", "comm_frac_critical"]),
    "balance": ("step", ["balance"]),
    "step-time": ("step", ["ms", "busy_ms_max", "busy_ms_min"]),
    "memory": ("step", ["state_bytes", "state_bytes_min", "peak_rss_bytes", "peak_rss_bytes_min"]),
    "grad-norm": ("step", ["grad_norm"]),
    "lr": ("step", ["lr"]),
}


def steps_of(path):
    """The step records a report keeps: later records of a step replace earlier ones (restarts)."""
    kept = []
    for r in metrics(path):
        if "event" in r or "step" not in r:
            continue
        while kept and kept[-1]["step"] >= r["step"]:
            kept.pop()
        kept.append(r)
    return kept


def expected_series(recs, keys):
    return [k for k in keys if any(isinstance(r.get(k), (int, float)) for r in recs)]


def check_page(page, runs, label):
    """runs: list of step-record lists, in page order."""
    check(len(page.charts) == len(CHARTS), "%s: %d charts (expected %d: %s)" % (label, len(page.charts), len(CHARTS),
                                                                              sorted(page.charts)))
    check(page.svgs >= len(CHARTS), "%s: %d <svg> for %d charts" % (label, page.svgs, len(CHARTS)))
    for name, (_, keys) in CHARTS.items():
        c = page.charts.get(name)
        if not c:
            check(False, "%s: chart %s missing" % (label, name))
            continue
        check(c["svg"] == 1, "%s/%s: one chart svg" % (label, name))
        want = sorted((i, k) for i, recs in enumerate(runs) for k in expected_series(recs, keys))
        got = sorted((r, k) for r, k, _ in c["series"])
        check(got == want, "%s/%s: series %s, expected %s" % (label, name, got, want))
        check(sorted(c["legend"]) == want, "%s/%s: legend %s, expected %s" % (label, name, sorted(c["legend"]), want))
    # point counts and pixel order of the loss chart (no decimation below 1000 points)
    for r, key, pts in page.charts.get("loss-step", {"series": []})["series"]:
        recs = [x for x in runs[r] if isinstance(x.get(key), (int, float))]
        check(len(pts) == len(recs), "%s: run %d %s has %d points for %d records" % (label, r, key, len(pts), len(recs)))
        if len(pts) != len(recs):
            continue
        check(all(pts[i][0] < pts[i + 1][0] for i in range(len(pts) - 1)), "%s: x grows with the step" % label)
        bad = [(i, j) for i in range(len(recs)) for j in range(len(recs))
               if recs[i][key] > recs[j][key] + 1e-3 and not pts[i][1] < pts[j][1]]
        check(not bad, "%s: run %d %s: a higher loss is drawn higher (SVG y down): %s" % (label, r, key, bad[:3]))


tmp = tempfile.mkdtemp(prefix="tpar_test_report_")
try:
    common = ["train", "--model", "tiny", "--data", DATA, "--seq", "32", "--batch", "4", "--steps", "12",
              "--val-every", "4", "--val-batches", "2", "--log-every", "6"]
    m1 = os.path.join(tmp, "tp1.jsonl")
    live = os.path.join(tmp, "live.html")
    rc, out, err = run(common + ["--metrics", m1, "--report", live])
    check(rc == 0, "TP=1 run: exit %d\n%s%s" % (rc, out, err))
    ck = os.path.join(tmp, "tp2_run")
    os.makedirs(ck)
    m2 = os.path.join(ck, "metrics.jsonl")
    rc, out, err = run(common + ["--tp", "2", "--metrics", m2, "--save-dir", ck, "--save-every", "4",
                                 "--max-restarts", "1"],
                       env={"TPAR_FAULT": "rank=1,step=7,kind=kill", "TPAR_PROGRESS_DELAY": "0"})
    check(rc == 0, "TP=2 run with a restart: exit %d\n%s%s" % (rc, out, err))
    check("saving model.safetensors" in err and "loading model.safetensors" in err and ": done," in err,
          "progress lines of checkpoint saves and loads on stderr:\n%s" % err[-2000:])

    rc, out, err = run(["generate", "--ckpt", ck, "--tokens", "4", "--prompt", "To"], env={"TPAR_PROGRESS_DELAY": "0"})
    check(rc == 0 and "loading model.safetensors: done" in err, "generate draws its checkpoint's loading: %s" % err)

    # on a terminal: a bar redrawn in place (stderr is a pseudo-terminal here)
    master, slave = pty.openpty()
    e = dict(os.environ, TPAR_PROGRESS_DELAY="0")
    p = subprocess.Popen([TPAR, "generate", "--ckpt", ck, "--tokens", "4", "--prompt", "To"], stdout=subprocess.DEVNULL,
                         stderr=slave, env=e)
    os.close(slave)
    tty = b""
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        tty += chunk
    os.close(master)
    rc = p.wait(timeout=60)
    tty = tty.decode(errors="replace")
    check(rc == 0 and "\rloading model.safetensors [" in tty and "] 100%" in tty and "\033[K" in tty,
          "on a terminal the loading draws a bar redrawn in place: %r" % tty[-400:])

    r1, r2 = steps_of(m1), steps_of(m2)
    check(len(r1) == 12 and len(r2) == 12, "12 steps kept in each run (%d, %d)" % (len(r1), len(r2)))
    hdr = [r for r in metrics(m2) if "run.tp" in r]
    check(len(hdr) == 2 and hdr[0]["run.tp"] == 2 and "--tp 2" in hdr[0].get("run.command", "") and
          [h["step"] for h in hdr] == [1, 5] and hdr[1]["run.start_step"] == 4,
          "TP=2 metrics: the header (layout, command) in the first step record of each start (%s)" % hdr[:1])
    check(all("step" in r for r in metrics(m1)), "every line of a run without restarts is a step record")
    check(all(k in r2[-1] for k in ["comm_frac_tp", "comm_frac_dp", "busy_ms_max", "busy_ms_min", "state_bytes_min",
                                     "peak_rss_bytes_min"]), "new step keys: %s" % sorted(r2[-1]))
    if r2:
        s = r2[-1]
        check(abs(s["comm_frac_tp"] + s["comm_frac_dp"] - s["comm_frac"]) < 1e-6,
              "TP + DP shares add up to comm_frac (%s)" % s)

    # ---- one run ------------------------------------------------------------------------------
    page1 = os.path.join(tmp, "one.html")
    rc, out, err = run(["report", m1, "-o", page1])
    check(rc == 0 and os.path.exists(page1), "report of one run: exit %d\n%s" % (rc, err))
    if os.path.exists(page1):
        p, text = parse(page1)
        check_page(p, [r1], "one run")
        check(p.rows == 1, "summary: one row (%d)" % p.rows)
        check("TP 1 x DP 1" in text and "tiny" in text and "tpar train" in text, "the run's header")
        check('id="no-trace"' in text and "--trace" in text, "says how to get a trace")

    page_log = os.path.join(tmp, "log.html")
    rc, _, err = run(["report", m1, "-o", page_log, "--log-loss"])
    check(rc == 0, "--log-loss: exit %d, %s" % (rc, err))
    if os.path.exists(page_log):
        p, text = parse(page_log)
        check_page(p, [r1], "log loss")
        check(text.count("(log scale)") == 2, "--log-loss: the two loss charts on a log scale")

    # ---- live page ------------------------------------------------------------------------------
    check(os.path.exists(live) and not os.path.exists(live + ".tmp"), "live page written, no .tmp left")
    if os.path.exists(live):
        p, _ = parse(live)
        check_page(p, [r1], "live")

    # ---- two runs overlaid; the second is a directory with a restart ----------------------------
    page2 = os.path.join(tmp, "two.html")
    rc, out, err = run(["report", m1, ck, "-o", page2, "--title", "TP=1 vs TP=2"])
    check(rc == 0, "report of two runs: exit %d\n%s" % (rc, err))
    if os.path.exists(page2):
        p, text = parse(page2)
        check_page(p, [r1, r2], "two runs")
        check(p.rows == 2, "summary: two rows (%d)" % p.rows)
        check("TP 1 x DP 1" in text and "TP 2 x DP 1" in text and "--tp 2" in text, "both runs' headers")
        for name, c in p.charts.items():
            check({r for r, _ in c["legend"]} == {0, 1}, "%s: a legend entry for each run" % name)
            want = 1 if CHARTS[name][0] == "step" else 0
            check(c["restarts"] == want, "%s: %d restart marks (expected %d)" % (name, c["restarts"], want))
        check("restart 1, resumed at step 4, 2 steps lost" in text, "the restart's lost steps named")

    # ---- bad inputs ------------------------------------------------------------------------------
    bad = os.path.join(tmp, "bad.html")
    rc, _, err = run(["report", os.path.join(tmp, "missing.jsonl"), "-o", bad])
    check(rc == 1 and "missing.jsonl" in err and "No such file" in err, "missing file: exit %d, %s" % (rc, err))
    empty = os.path.join(tmp, "empty.jsonl")
    open(empty, "w").close()
    rc, _, err = run(["report", empty, "-o", bad])
    check(rc == 1 and "empty" in err, "empty file: exit %d, %s" % (rc, err))
    rc, _, err = run(["report", "-o", bad])
    check(rc == 2 and "no run given" in err, "no run: exit %d, %s" % (rc, err))
    rc, _, err = run(["report", m1])
    check(rc == 2 and "-o" in err, "no output: exit %d, %s" % (rc, err))
    check(not os.path.exists(bad), "no page written on errors")
    rc, _, err = run(common + ["--report", os.path.join(tmp, "x.html")])
    check(rc == 2 and "add --metrics FILE" in err, "train --report without --metrics: exit %d, %s" % (rc, err))
    rc, out, _ = run(["report", "--help"])
    check(rc == 0 and "usage: tpar report RUN... -o FILE.html" in out, "report --help: exit %d" % rc)
    rc, _, err = run(["report", m1, "-o", bad, "--points", "1"])
    check(rc == 2 and "--points" in err, "--points out of range: exit %d, %s" % (rc, err))

    trunc = os.path.join(tmp, "trunc.jsonl")
    with open(m1) as f:
        text = f.read()
    with open(trunc, "w") as f:
        f.write(text + text.splitlines()[-1][:25])  # the run was killed mid-line
    page3 = os.path.join(tmp, "trunc.html")
    rc, _, err = run(["report", trunc, "-o", page3])
    check(rc == 0 and "truncated" in err and "line %d" % (len(text.splitlines()) + 1) in err,
          "truncated last line: exit %d, warning %s" % (rc, err))
    if os.path.exists(page3):
        p, _ = parse(page3)
        check_page(p, [r1], "truncated")

    noval = os.path.join(tmp, "noval.jsonl")
    with open(noval, "w") as f:
        for r in metrics(m1):
            r.pop("val_loss", None)
            f.write(json.dumps(r) + "\n")
    page4 = os.path.join(tmp, "noval.html")
    rc, _, err = run(["report", noval, "-o", page4])
    check(rc == 0 and "no validation" in err, "no validation: exit %d, warning %s" % (rc, err))
    if os.path.exists(page4):
        p, text = parse(page4)
        check_page(p, [steps_of(noval)], "no validation")
        check("no validation recorded" in text, "the page says validation is missing")
finally:
    shutil.rmtree(tmp, ignore_errors=True)

print("test_report: %d checks, %d failed" % (checks, len(failures)))
sys.exit(1 if failures else 0)
