"""drain_worker - graceful drain of a busy worker (dyn-serve(1) FAULT
TOLERANCE).

A frontend routes streaming completions round-robin to echo workers (the
echo engine streams the prompt back, --token-echo-delay-ms apart: the
reference text, and long streams).  Checked:
- SIGTERM to a busy worker: it leaves the frontend's worker set at once
  (dyn_frontend_workers, well before its 10 s lease TTL), reports
  dyn_worker_draining 1, takes no new request (those go to the other
  worker and succeed), finishes every stream it had (full text, no
  error) and exits 0;
- the same with --grace-period 0.5 and streams longer than that: the
  streams it still runs at the end of the grace period end at once with a
  clean error whose message begins with "migrate:" (the typed error a
  frontend migrates; this frontend runs with --migration-limit 0), as
  many as the worker's log says it migrated, and it exits 0;
- a drain request (`dyn rpc call --address ADDR NS/COMP/drain`) drains a
  worker the same way;
- a prefill worker (builtin engine) drained while it holds a prompt's KV
  blocks waits for the decode worker to fetch them (the decode worker
  counts a remote prefill, no fallback) and then exits 0; with a grace
  period shorter than the wait, it releases the hold and exits 0 then.
"""
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "pylib"))
import dynproc as d  # noqa: E402

NAME = "stories260K"
WORDS = " ".join(f"w{i}" for i in range(30))


class Stream(threading.Thread):
    """One streaming completion; text, error and whether it ended."""

    def __init__(self, url, prompt=WORDS):
        super().__init__(daemon=True)
        self.url, self.prompt = url, prompt
        self.text, self.error, self.done, self.exc = "", None, False, None
        self.start()

    def run(self):
        body = json.dumps({"model": NAME, "prompt": self.prompt, "max_tokens": 400,
                           "stream": True}).encode()
        req = urllib.request.Request(self.url + "/v1/completions", body,
                                     {"content-type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                for ev in d.sse_events(r):
                    if ev is None:
                        self.done = True
                        break
                    if "error" in ev:
                        self.error = ev["error"]["message"]
                    else:
                        self.text += ev["choices"][0]["text"]
        except Exception as e:  # noqa: BLE001
            self.exc = repr(e)


def sys_metric(w, name, **labels):
    return d.metric(d.http_get(f"http://127.0.0.1:{w.sys_port}/metrics", 5)[1], name, **labels)


def workers_seen(f):
    return d.metric(d.http_get(f.url + "/metrics")[1], "dyn_frontend_workers", model=NAME) or 0


def complete(f, prompt="a b c"):
    body = json.dumps({"model": NAME, "prompt": prompt, "max_tokens": 16}).encode()
    req = urllib.request.Request(f.url + "/v1/completions", body,
                                 {"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=20) as r:
        return json.loads(r.read())["choices"][0]["text"]


def busy_streams(f, w, n):
    """n streams, started once w runs at least two of them."""
    streams = [Stream(f.url) for _ in range(n)]
    d.wait_until(lambda: (sys_metric(w, "dyn_worker_active_requests") or 0) >= 2, 10)
    time.sleep(0.3)
    return streams


def full_log(p):
    p.log.flush()
    with open(p.log.name) as fh:
        return fh.read()


def graceful(f, b):
    a = d.worker(delay=40, extra=["--grace-period", "30"])
    d.wait_until(lambda: workers_seen(f) == 2)
    streams = busy_streams(f, a, 6)
    before = sys_metric(a, "dyn_worker_requests_total")
    t0 = time.time()
    a.p.send_signal(signal.SIGTERM)
    left = d.wait_until(lambda: workers_seen(f) == 1, 5, 0.02)
    d.check("SIGTERM: the worker leaves the frontend's set before its lease TTL",
            left and time.time() - t0 < 2, f"{workers_seen(f)} workers after "
            f"{time.time() - t0:.1f} s")
    d.check("SIGTERM: dyn_worker_draining is 1", sys_metric(a, "dyn_worker_draining") == 1)
    news = [complete(f) for _ in range(4)]
    d.check("SIGTERM: new requests go to the other worker and succeed",
            all(t.strip() == "a b c" for t in news) and
            sys_metric(a, "dyn_worker_requests_total") == before, f"{news}")
    for s in streams:
        s.join(30)
    bad = [(s.text[-40:], s.error, s.exc) for s in streams
           if not s.done or s.error or s.exc or s.text.strip() != WORDS]
    d.check("SIGTERM: every stream in flight finishes in full", not bad, str(bad[:2]))
    rc = a.p.wait(30)
    d.check("SIGTERM: the worker exits 0", rc == 0, f"exit status {rc}: {a.stderr()}")


def tiny_grace(f, b):
    c = d.worker(delay=100, extra=["--grace-period", "0.5"])
    d.wait_until(lambda: workers_seen(f) == 2)
    streams = busy_streams(f, c, 6)
    t0 = time.time()
    c.p.send_signal(signal.SIGTERM)
    rc = c.p.wait(10)
    took = time.time() - t0
    d.check("tiny grace: the worker exits 0 soon after its grace period",
            rc == 0 and took < 3, f"exit status {rc} after {took:.1f} s")
    m = re.search(r"grace period over: (\d+) request\(s\) ended with the migrate error",
                  full_log(c))
    migrated = int(m.group(1)) if m else -1
    time.sleep(0.5)
    ended = [s for s in streams if s.error]
    d.check("tiny grace: the streams cut end with the migrate error, at once",
            migrated >= 1 and len(ended) == migrated and
            all(s.error.startswith("migrate:") and s.done for s in ended),
            f"log says {migrated} migrated; errors: {[s.error for s in ended]}")
    for s in streams:
        s.join(30)
    bad = [(s.text[-30:], s.exc) for s in streams
           if s not in ended and (not s.done or s.exc or s.text.strip() != WORDS)]
    d.check("tiny grace: the other streams finish in full", not bad, str(bad[:2]))


def drain_request(f):
    w = d.worker(delay=1)
    d.wait_until(lambda: workers_seen(f) == 2)
    addr = re.search(r"generate at \S+ (\S+)", w.line).group(1)
    out = subprocess.run([d.DYN, "rpc", "call", "--address", addr, "dyn/backend/drain"],
                         capture_output=True, text=True, timeout=20)
    d.check("drain request: answered", '"draining":true' in out.stdout,
            out.stdout + out.stderr)
    d.check("drain request: the worker leaves the frontend's set",
            d.wait_until(lambda: workers_seen(f) == 1, 5, 0.02), f"{workers_seen(f)} workers")
    rc = w.p.wait(10)
    d.check("drain request: the worker exits 0", rc == 0, f"exit status {rc}")


def rpc_generate(w, body, timeout=30):
    """The last frame of a generate call to w (found through the store)."""
    p = subprocess.run([d.DYN, "rpc", "call", "--store", d.store, "--instance", w.id,
                        "--timeout", str(timeout),
                        "dyn/backend/generate", json.dumps(body)],
                       capture_output=True, text=True, timeout=timeout + 10)
    frames = [json.loads(x) for x in p.stdout.splitlines() if x.startswith("{")]
    return frames[-1] if frames else {"error": p.stdout + p.stderr}


def disagg_request(ids, disagg):
    return {"token_ids": ids, "sampling": {"temperature": 0}, "disagg": disagg,
            "stop": {"max_tokens": 4, "ignore_eos": True}}


def prefill_holds(w):
    return sys_metric(w, "dyn_worker_kv_holds") or 0


def prefill_drain():
    ids = [1] + [(7 * i) % 400 + 3 for i in range(40)]
    dec = d.worker(engine="builtin", extra=["--role", "decode"])
    pre = d.worker(engine="builtin", extra=["--role", "prefill", "--kv-hold-timeout", "60000"])
    src = rpc_generate(pre, disagg_request(ids, {"prefill": True})).get("kv_source")
    d.check("prefill: a hold to fetch", src and prefill_holds(pre) == 1, f"{src}")
    pre.p.send_signal(signal.SIGTERM)
    time.sleep(1)
    d.check("prefill: drained, it waits for the hold to be fetched",
            pre.p.poll() is None and sys_metric(pre, "dyn_worker_draining") == 1)
    last = rpc_generate(dec, disagg_request(ids, {"kv_source": src}))
    remote = sys_metric(dec, "dyn_worker_prefill_total", where="remote")
    fallbacks = sys_metric(dec, "dyn_worker_kv_fallbacks_total")
    d.check("prefill: the decode worker fetched the blocks from it",
            last.get("finish_reason") == "length" and remote == 1 and fallbacks == 0,
            f"{last} remote {remote} fallbacks {fallbacks}")
    rc = pre.p.wait(10)
    d.check("prefill: then it exits 0", rc == 0, f"exit status {rc}")

    pre = d.worker(engine="builtin", extra=["--role", "prefill", "--kv-hold-timeout", "60000",
                                            "--grace-period", "1"])
    src = rpc_generate(pre, disagg_request(ids, {"prefill": True})).get("kv_source")
    t0 = time.time()
    pre.p.send_signal(signal.SIGTERM)
    rc = pre.p.wait(10)
    took = time.time() - t0
    d.check("prefill: a hold not fetched is released at the end of the grace period",
            src and rc == 0 and 0.9 < took < 3, f"exit status {rc} after {took:.1f} s")
    dec.stop()


def main():
    deadline = threading.Timer(180, lambda: os._exit(3))
    deadline.daemon = True
    deadline.start()
    # Without migration, a cut stream's error reaches the client as is
    # (migration.py tests the frontend's migration).
    f = d.frontend(["--migration-limit", "0"])
    b = d.worker(delay=40)
    graceful(f, b)
    tiny_grace(f, b)
    drain_request(f)
    prefill_drain()
    d.finish()


if __name__ == "__main__":
    main()
