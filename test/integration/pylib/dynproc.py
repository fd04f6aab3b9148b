"""dynproc - start dyn workers and frontends for the integration tests
(and the benchmarks written in Python).

Each test gets a private file store in a temporary directory.  Processes
are started with their stdout parsed for the bound ports, and stopped
(SIGTERM, then SIGKILL) at exit.  PASS/FAIL lines follow test/run.sh.
"""
import atexit
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

TOP = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
DYN = os.environ.get("DYN_BIN", os.path.join(TOP, "dyn"))
MODEL = os.path.abspath(os.path.join(TOP, "..", "shared", "models", "stories260K"))
SCRIPT = os.path.splitext(os.path.basename(sys.argv[0]))[0]

failed = 0
procs = []
tmp = tempfile.mkdtemp(prefix="dyn-it-")
store = "file://" + os.path.join(tmp, "store")


def free_port():
    """A loopback port free now (for processes that cannot bind port 0)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def check(name, cond, why=""):
    global failed
    if cond:
        print(f"PASS: {SCRIPT}/{name}", flush=True)
    else:
        failed += 1
        print(f"FAIL: {SCRIPT}/{name}: {why}", flush=True)
    return cond


def skip(name, why):
    print(f"SKIP: {SCRIPT}/{name}: {why}", flush=True)


class Proc:
    """dyn with args, started once a stdout line matches pattern; wrap: a
    command that execs it (e.g. ip netns exec NS)."""

    def __init__(self, args, pattern, env=None, timeout=20, preexec=None, wrap=()):
        e = dict(os.environ, DYN_STORE=store, DYN_LOG=os.environ.get("DYN_LOG", "warn"))
        e.update(env or {})
        self.log = open(os.path.join(tmp, f"p{len(procs)}.log"), "w+")
        self.args = args
        self.p = subprocess.Popen(list(wrap) + [DYN] + args, stdout=subprocess.PIPE,
                                  stderr=self.log, env=e, text=True, preexec_fn=preexec)
        procs.append(self)
        end = time.time() + timeout
        self.line = ""
        while time.time() < end:
            line = self.p.stdout.readline()
            if not line:
                break
            m = re.search(pattern, line)
            if m:
                self.m = m
                self.line = line
                return
        raise RuntimeError(f"dyn {' '.join(args)} did not start: {self.stderr()}")

    def stderr(self):
        self.log.flush()
        self.log.seek(0)
        return self.log.read()[-3000:]

    def stop(self, sig=signal.SIGTERM, timeout=15):
        if self.p.poll() is None:
            self.p.send_signal(sig)
            try:
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        return self.p.returncode


def worker(extra=(), name=None, delay=0, ttl=None, engine="echo"):
    args = ["serve", "--model", MODEL, "--system-port", "0", "--engine", engine]
    if name:
        args += ["--served-model-name", name]
    if ttl:
        args += ["--lease-ttl", str(ttl)]
    args += list(extra)
    w = Proc(args, r"instance ([0-9a-f]{16}) .* system port (\d+)",
             env={"DYN_TOKEN_ECHO_DELAY_MS": str(delay)})
    w.id = w.m.group(1)
    w.sys_port = int(w.m.group(2))
    return w


def frontend(extra=(), preexec=None):
    f = Proc(["frontend", "--http-port", "0", "--http-host", "127.0.0.1"] + list(extra),
             r"listening on http://[^:]+:(\d+)", preexec=preexec)
    f.port = int(f.m.group(1))
    f.url = f"http://127.0.0.1:{f.port}"
    return f


def model_kv_shape(model):
    """(layers, KV heads, head dim, vocab) of a model folder's config.json."""
    with open(os.path.join(model, "config.json")) as f:
        c = json.load(f)
    heads = c["num_attention_heads"]
    kv_heads = c.get("num_key_value_heads", heads)
    head_dim = c.get("head_dim") or c["hidden_size"] // heads
    return c["num_hidden_layers"], kv_heads, head_dim, c["vocab_size"]


def instance_meta(w, component="backend"):
    """The metadata of worker w's instance record (dyn-store(5)), read with
    dyn store get; {"error": ...} when it cannot be read."""
    p = subprocess.run([DYN, "store", "get", "--store", store,
                        f"v1/instances/dyn/{component}/generate/{w.id}"],
                       capture_output=True, text=True, timeout=10)
    try:
        return json.loads(p.stdout).get("metadata", {})
    except ValueError:
        return {"error": p.stdout + p.stderr}


def http_get(url, timeout=10):
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def sys_metrics(p):
    """The /metrics text of process p's system port (p.host, else loopback)."""
    return http_get(f"http://{getattr(p, 'host', '127.0.0.1')}:{p.sys_port}/metrics")[1]


def sys_metric(p, name, **labels):
    """A value of p's /metrics (summed over the other labels), 0 when absent."""
    return metric(sys_metrics(p), name, **labels) or 0


def pct(xs, p):
    """Percentile p of xs, interpolated linearly (as numpy's default)."""
    if not xs:
        return float("nan")
    xs = sorted(xs)
    k = (len(xs) - 1) * p / 100.0
    i = int(k)
    return xs[i] if i + 1 >= len(xs) else xs[i] + (xs[i + 1] - xs[i]) * (k - i)


def run_bench(main):
    """Exit with main()'s status (1 if it raised) once every process is
    stopped and the temporary directory removed."""
    rc = 1
    try:
        rc = main()
    finally:
        for p in procs:
            p.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    sys.exit(rc)


def run_offline(*args, timeout=120):
    """dyn ARGS without the caller's DYN_* and HF_* variables and with the
    hub offline (nothing may touch the network): a CompletedProcess, status
    124 when it timed out."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DYN_", "HF_"))}
    env["HF_HUB_OFFLINE"] = "1"
    try:
        return subprocess.run([DYN, *args], env=env, capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired as e:
        return subprocess.CompletedProcess(e.cmd, 124, "", "timed out")


def sse_events(resp):
    """The JSON objects of a Server-Sent Events response's data lines, in
    order, then None for its "data: [DONE]" (nothing after it is read)."""
    for raw in resp:
        line = raw.decode().strip()
        if not line.startswith("data: "):
            continue
        if line == "data: [DONE]":
            yield None
            return
        yield json.loads(line[6:])


def post_json(url, body, timeout=60):
    """POST body (an object) as JSON: (status, the answer parsed), or
    (status, its text) for an HTTP error, (0, why) when the connection
    failed."""
    req = urllib.request.Request(url, json.dumps(body).encode(),
                                 {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except OSError as e:
        return 0, str(e)


def wait_until(fn, timeout=15, step=0.05):
    end = time.time() + timeout
    while time.time() < end:
        try:
            if fn():
                return True
        except Exception:
            pass
        time.sleep(step)
    return False


def metric(text, name, **labels):
    """Sum of the samples of a metric whose labels include labels."""
    total, found = 0.0, False
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        m = re.match(r"([a-zA-Z_:]+)(\{([^}]*)\})? (\S+)$", line)
        if not m or m.group(1) != name:
            continue
        ls = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(3) or ""))
        if all(ls.get(k) == v for k, v in labels.items()):
            total += float(m.group(4))
            found = True
    return total if found else None


def promtool_check(name, text):
    """Check a /metrics text with `promtool check metrics` (Debian
    prometheus), or report a skip when it is not installed."""
    promtool = shutil.which("promtool")
    if not promtool:
        skip(name, "promtool not installed (Debian prometheus)")
        return
    pc = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True,
                        text=True)
    check(name, pc.returncode == 0, pc.stdout + pc.stderr)


def worker_counters(workers):
    """{worker id: (requests served, prefix-cache hit tokens)} of the live
    workers, read from each one's own /metrics."""
    out = {}
    for w in workers:
        if w.p.poll() is not None:
            continue
        t = http_get(f"http://127.0.0.1:{w.sys_port}/metrics")[1]
        out[w.id] = (metric(t, "dyn_worker_requests_total") or 0,
                     metric(t, "dyn_worker_prefix_cache_hit_tokens_total") or 0)
    return out


def finish():
    for p in reversed(procs):
        rc = p.stop()
        if os.environ.get("SAN") == "1" and rc not in (0, -9, 137):
            check(f"clean exit under sanitizers ({' '.join(p.args[:2])})", False,
                  f"exit status {rc}: {p.stderr()}")
    shutil.rmtree(tmp, ignore_errors=True)
    sys.exit(1 if failed else 0)


@atexit.register
def _cleanup():
    for p in procs:
        if p.p.poll() is None:
            p.p.kill()
