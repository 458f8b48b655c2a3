"""Shared by the end-to-end fault tests (test_fault.py, test_chaos.py): the check counter, the
training command both use, and what a finished job may leave behind."""
import os
import subprocess
import time

failures = []
checks = 0


def check(ok, what, out=""):
    global checks
    checks += 1
    if not ok:
        failures.append(what)
        print("FAIL:", what, flush=True)
        if out:
            print("    " + out.replace("\n", "\n    "), flush=True)


def finish():
    if failures:
        print("%d of %d checks failed" % (len(failures), checks))
        raise SystemExit(1)
    print("all %d checks passed" % checks)


# Every run: tiny model, TP=2, batch 4 x 32 tokens, 8 steps, a checkpoint every 2 steps (keep 2).
STEPS = 8


def train_args(data, save_dir, metrics):
    return ["train", "--data", data, "--tp", "2", "--batch", "4", "--seq", "32", "--steps", str(STEPS),
            "--save-every", "2", "--keep", "2", "--val-every", "0", "--val-batches", "1", "--log-every", "1",
            "--save-dir", save_dir, "--metrics", metrics]


def final_files(save_dir):
    d = os.path.join(save_dir, "step_%08d" % STEPS)
    out = {}
    for fn in ["model.safetensors", "optim.safetensors"]:
        p = os.path.join(d, fn)
        out[fn] = open(p, "rb").read() if os.path.exists(p) else None
    return out


def job_processes(tag):
    """Live processes whose command line mentions tag (the run's own temporary directory); a
    zombie's command line reads empty, so zombies are not counted."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as f:
                if tag.encode() in f.read():
                    found.append(int(pid))
        except OSError:
            pass
    return found


def wait_gone(tag, limit_s=10.0):
    """The job's processes, after waiting up to limit_s for them to go."""
    t0 = time.monotonic()
    while True:
        left = job_processes(tag)
        if not left or time.monotonic() - t0 > limit_s:
            return left
        time.sleep(0.1)


def kill_all(tag):
    """Ends whatever of the job is left, stopped ones included (clean-up after a failed check)."""
    for pid in job_processes(tag):
        for sig in (18, 9):  # SIGCONT, SIGKILL
            try:
                os.kill(pid, sig)
            except OSError:
                pass


def shm_entries(with_mpi=False):
    """/dev/shm entries; Open MPI's own (vader, sm, ompi) only when with_mpi."""
    try:
        names = os.listdir("/dev/shm")
    except OSError:
        return set()
    if not with_mpi:
        names = [e for e in names if not e.startswith(("vader", "sm_segment", "ompi"))]
    return set(names)


def held_files():
    """Paths that some live process holds open or maps (to tell another job's live Open MPI
    segment from one a dead job left)."""
    held = set()
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            for fd in os.listdir("/proc/%s/fd" % pid):
                try:
                    held.add(os.readlink("/proc/%s/fd/%s" % (pid, fd)))
                except OSError:
                    pass
            with open("/proc/%s/maps" % pid) as f:
                for line in f:
                    if "/dev/shm/" in line:
                        held.add(line.split(None, 5)[-1].strip())
        except OSError:
            pass
    return held


def run(cmd, env, limit_s):
    """Runs cmd to the end; (returncode, output, seconds). A run past limit_s fails the test."""
    t0 = time.monotonic()
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, timeout=limit_s)
    return p.returncode, p.stdout, time.monotonic() - t0
