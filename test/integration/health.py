"""health - the frontend's health checks of its workers and the stream
progress timeout (dyn-frontend(1) FAULT TOLERANCE).

A worker that stops answering (SIGSTOP: its connections stay open and
its kernel still accepts, so only an answer tells) must be found
unhealthy within --health-check-interval + --health-check-timeout, no
request may be routed to it while it is, and the requests it holds go on
on another worker; once it runs again (SIGCONT) it answers a check and
is routed to again.  References: the model's published greedy output
(stories260K, ../shared/models/stories260K/expected_greedy_from_bos.txt)
for the migrated answers, the workers' own request counters for where
requests went.  Checked:
- two healthy workers: /health says 2 routable, checks are answered
  (dyn_frontend_health_checks_total{result="ok"} grows), none unhealthy;
- one worker stopped before two requests arrive: within the bound it is
  unhealthy (the gauge, /health's routable count), the request it held
  before its first token ends with the reference text on the other
  worker (a migration with cause "stalled"), and the next requests all
  go to the other worker;
- SIGCONT: healthy again, and round-robin uses it again;
- dyn router (the router service) finds the same, in its own
  dyn_router_unhealthy_workers;
- --progress-timeout: an echo stream whose worker stops after its first
  tokens moves on (cause "stalled") with every token it asked for, with
  health checks off (the worker is then marked down for a while);
- with --health-check-interval 0 no check is made; /metrics passes
  promtool.
"""
import json
import os
import signal
import sys
import threading
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "pylib"))
import dynproc as d  # noqa: E402

NAME = "stories260K"
with open(os.path.join(d.MODEL, "expected_greedy_from_bos.txt")) as fh:
    WANT = fh.read()
CHECK_EVERY, CHECK_TIMEOUT = 0.5, 1.0
BOUND = CHECK_EVERY + CHECK_TIMEOUT + 2.0	# plus slack for a loaded machine


def complete(fe, prompt="", max_tokens=200, stream=False, timeout=60):
    body = {"model": NAME, "prompt": prompt, "max_tokens": max_tokens, "temperature": 0,
            "stream": stream}
    if stream:
        body["stream_options"] = {"include_usage": True}
    req = urllib.request.Request(fe.url + "/v1/completions", json.dumps(body).encode(),
                                 {"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        if not stream:
            res = json.loads(r.read())
            return res["choices"][0]["text"], res["usage"]["completion_tokens"]
        text, n = "", 0
        for ev in d.sse_events(r):
            if ev is None:
                break
            if "error" in ev:
                return None, ev["error"]
            for c in ev.get("choices") or []:
                text += c.get("text") or ""
            if ev.get("usage"):
                n = ev["usage"]["completion_tokens"]
        return text, n


def fmetric(fe, name, **labels):
    return d.metric(d.http_get(fe.url + "/metrics")[1], name, **labels) or 0


wmetric = d.sys_metric


def routable(fe):
    return json.loads(d.http_get(fe.url + "/health")[1]).get("routable", {}).get(NAME)


class Req(threading.Thread):
    def __init__(self, fe):
        super().__init__(daemon=True)
        self.fe, self.res, self.exc = fe, None, None
        self.start()

    def run(self):
        try:
            self.res = complete(self.fe)
        except Exception as e:	# noqa: BLE001 - reported by the check
            self.exc = e


a = d.worker(engine="builtin")
b = d.worker(engine="builtin")
CHECKS = ["--health-check-interval", str(CHECK_EVERY), "--health-check-timeout",
          str(CHECK_TIMEOUT)]
fe = d.frontend(CHECKS)
# the router service checks the workers too (its own view; in a namespace of
# its own, so that the frontend keeps routing round-robin)
router = d.Proc(["router", "--system-port", "0", "--namespace", "checks"] + CHECKS,
                r"system port (\d+)")
router.sys_port = int(router.m.group(1))


def router_unhealthy():
    return d.sys_metric(router, "dyn_router_unhealthy_workers")

d.wait_until(lambda: routable(fe) == 2, timeout=10)
d.check("two workers: /health says both are routable", routable(fe) == 2,
        d.http_get(fe.url + "/health")[1])
d.check("the workers answer their health checks",
        d.wait_until(lambda: fmetric(fe, "dyn_frontend_health_checks_total", result="ok") >= 4,
                     timeout=10),
        str(fmetric(fe, "dyn_frontend_health_checks_total", result="ok")))
d.check("no worker unhealthy", fmetric(fe, "dyn_frontend_unhealthy_workers") == 0)

# ---- a stopped worker -----------------------------------------------------------
served_a = wmetric(a, "dyn_worker_requests_total")
served_b = wmetric(b, "dyn_worker_requests_total")
a.p.send_signal(signal.SIGSTOP)
t0 = time.time()
reqs = [Req(fe), Req(fe)]	# round-robin: one of them waits on the stopped worker
unhealthy = d.wait_until(lambda: fmetric(fe, "dyn_frontend_unhealthy_workers") == 1,
                         timeout=BOUND + 5)
took = time.time() - t0
d.check(f"a stopped worker is unhealthy within {BOUND:.0f} s", unhealthy and took <= BOUND,
        f"after {took:.1f} s")
d.check("/health: one routable worker left", routable(fe) == 1,
        d.http_get(fe.url + "/health")[1])
d.check("the router service finds it unhealthy too",
        d.wait_until(lambda: router_unhealthy() == 1, timeout=BOUND + 5), str(router_unhealthy()))
for r in reqs:
    r.join(30)
d.check("the request held by the stopped worker ends on the other one, with the "
        "reference text", all(r.res and r.res[0] == WANT for r in reqs),
        str([(r.res and r.res[0][:40], r.exc) for r in reqs]))
d.check("that was a migration with cause stalled",
        fmetric(fe, "dyn_frontend_migrations_total", cause="stalled") == 1,
        str(fmetric(fe, "dyn_frontend_migrations_total", cause="stalled")))
answers = [complete(fe, max_tokens=8) for _ in range(6)]
d.check("while it is unhealthy every request goes to the other worker",
        wmetric(b, "dyn_worker_requests_total") - served_b == 8,
        f"b served {wmetric(b, 'dyn_worker_requests_total') - served_b} of 8")

# ---- it runs again ----------------------------------------------------------------
a.p.send_signal(signal.SIGCONT)
d.check("a worker running again is healthy again",
        d.wait_until(lambda: fmetric(fe, "dyn_frontend_unhealthy_workers") == 0,
                     timeout=BOUND + 5))
d.check("/health: both routable again", routable(fe) == 2)
d.check("the router service: healthy again",
        d.wait_until(lambda: router_unhealthy() == 0, timeout=BOUND + 5), str(router_unhealthy()))
before = wmetric(a, "dyn_worker_requests_total")
for _ in range(4):
    complete(fe, max_tokens=8)
d.check("round-robin routes to it again", wmetric(a, "dyn_worker_requests_total") - before == 2,
        f"{wmetric(a, 'dyn_worker_requests_total') - before} of 4")
d.check("the stalled request was cancelled on it (none active)",
        d.wait_until(lambda: wmetric(a, "dyn_worker_active_requests") == 0, timeout=10))
d.promtool_check("/metrics passes promtool", d.http_get(fe.url + "/metrics")[1])

# ---- the progress timeout, checks off ---------------------------------------------------
e1 = d.worker(["--served-model-name", "echo"], delay=100)
e2 = d.worker(["--served-model-name", "echo"], delay=100)
fp = d.frontend(["--health-check-interval", "0", "--progress-timeout", "1"])
d.wait_until(lambda: json.loads(d.http_get(fp.url + "/health")[1]).get("routable", {})
             .get("echo") == 2, timeout=10)
NAME = "echo"
res = {}
# the echo engine sends the prompt's tokens back, up to max_tokens: a prompt
# longer than that, so that a migrated stream (whose new prompt is the old
# one and the tokens so far) still ends at max_tokens
PROMPT = " ".join(f"w{i}" for i in range(80))
t = threading.Thread(target=lambda: res.update(r=complete(fp, PROMPT, max_tokens=20,
                                                          stream=True)))
t.start()
# the worker streaming it: the one with an active request, stopped after a few tokens
busy = None
end = time.time() + 10
while busy is None and time.time() < end:
    for w in (e1, e2):
        if wmetric(w, "dyn_worker_active_requests") == 1:
            busy = w
    time.sleep(0.05)
time.sleep(0.5)
if busy:
    busy.p.send_signal(signal.SIGSTOP)
t.join(40)
if busy:
    busy.p.send_signal(signal.SIGCONT)
d.check("a stream silent past --progress-timeout goes on on another worker, every token "
        "asked for", busy is not None and res.get("r") and res["r"][1] == 20,
        str(res.get("r")))
d.check("counted as a stalled migration",
        fmetric(fp, "dyn_frontend_migrations_total", cause="stalled") == 1)
d.check("checks off: none made", fmetric(fp, "dyn_frontend_health_checks_total", result="ok") +
        fmetric(fp, "dyn_frontend_health_checks_total", result="failed") == 0)
d.finish()
