"""store_register - how long WORKERS (64) echo workers take to register
and become routable, on etcd against the file store (run by
store_etcd.sh with the etcd it started: store_register.py etcd://HOST:PORT).

Per round and store: a frontend started and listening, then the workers
all spawned at once (dyn serve --engine echo, the lightest); the time is
from the first spawn to the frontend's /metrics counting all of them
(dyn_frontend_workers, the instances its router can choose from).  Two
rounds, the stores alternating (the host is shared); the best of each is
reported, with the ratio etcd / file.  Prints a table and a FIGURE line
(test/bench/run.sh).
"""
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "integration", "pylib"))
import dynproc as d  # noqa: E402

WORKERS = int(os.environ.get("WORKERS", "64"))
TIMEOUT = 120


def workers_seen(url):
    try:
        with urllib.request.urlopen(url + "/metrics", timeout=5) as r:
            t = r.read().decode()
    except OSError:
        return 0
    return d.metric(t, "dyn_frontend_workers", model="stories260K", role="agg") or 0


def stop(procs):
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    end = time.time() + 20
    for p in procs:
        try:
            p.wait(max(0.1, end - time.time()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def one_round(store, ns, logdir):
    """Seconds until the frontend routes to WORKERS workers, or None."""
    env = dict(os.environ, DYN_STORE=store, DYN_NAMESPACE=ns, DYN_LOG="warn")
    log = open(os.path.join(logdir, f"{ns}.log"), "w")
    fe = subprocess.Popen([d.DYN, "frontend", "--http-port", "0", "--http-host", "127.0.0.1"],
                          stdout=subprocess.PIPE, stderr=log, env=env, text=True)
    procs = [fe]
    try:
        m = re.search(r"listening on (http://[^:]+:\d+)", fe.stdout.readline())
        if not m:
            print(f"store_register: the frontend on {store} did not start", file=sys.stderr)
            return None
        url = m.group(1)
        t0 = time.monotonic()
        for _ in range(WORKERS):
            procs.append(subprocess.Popen(
                [d.DYN, "serve", "--model", d.MODEL, "--engine", "echo"],
                stdout=subprocess.DEVNULL, stderr=log, env=env))
        while time.monotonic() - t0 < TIMEOUT:
            if workers_seen(url) == WORKERS:
                return time.monotonic() - t0
            if any(p.poll() is not None for p in procs):
                break
            time.sleep(0.05)
        print(f"store_register: {workers_seen(url)} of {WORKERS} workers routable on {store}",
              file=sys.stderr)
        return None
    finally:
        stop(procs)
        log.close()


def main():
    etcd = sys.argv[1]
    tmp = tempfile.mkdtemp(prefix="dyn-bench-")
    runs = {"file": [], "etcd": []}
    try:
        for r in range(2):
            for name, store in (("file", "file://" + os.path.join(tmp, f"store{r}")),
                                ("etcd", etcd)):
                t = one_round(store, f"reg{r}", tmp)
                if t is None:
                    return 1
                runs[name].append(t)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    f, e = min(runs["file"]), min(runs["etcd"])
    print(f"\n{WORKERS} echo workers started at once until routable")
    print(f"{'store':8} {'best s':>8}   rounds")
    print(f"{'file':8} {f:8.2f}   {' '.join(f'{t:.2f}' for t in runs['file'])}")
    print(f"{'etcd':8} {e:8.2f}   {' '.join(f'{t:.2f}' for t in runs['etcd'])}"
          f"   ({e / f:.2f}x file)")
    print(f"FIGURE store_etcd_register_{WORKERS} {e:.3f} s {e / f:.3f} file_store")
    return 0


if __name__ == "__main__":
    sys.exit(main())
