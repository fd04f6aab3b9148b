"""frontend_restart - a frontend restarted while workers run finds them
again through the store and serves at once (dyn-serve(1) FAULT TOLERANCE).

Two echo workers (the echo engine answers with the prompt: the reference)
and a frontend on one file store.  The frontend is killed (SIGKILL: a
crash, then SIGTERM: a restart) and a new one started on the same store:
its very first request, sent as soon as it prints its listening line,
succeeds, /v1/models lists the model, it counts both workers, and
round-robin sends requests to both of them (each worker's own /metrics).
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
PROMPT = "once upon a time"


def complete(f):
    body = json.dumps({"model": NAME, "prompt": PROMPT, "max_tokens": 32}).encode()
    req = urllib.request.Request(f.url + "/v1/completions", body,
                                 {"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=20) as r:
        return json.loads(r.read())["choices"][0]["text"]


def served(workers):
    return [d.metric(d.http_get(f"http://127.0.0.1:{w.sys_port}/metrics")[1],
                     "dyn_worker_requests_total") or 0 for w in workers]


def restart(how, sig, workers):
    f = d.frontend(["--router-mode", "round-robin"])
    d.check(f"{how}: the first frontend serves", complete(f).strip() == PROMPT)
    f.stop(sig)
    t0 = time.time()
    f2 = d.frontend(["--router-mode", "round-robin"])
    try:
        text, why = complete(f2), ""
    except Exception as e:  # noqa: BLE001
        text, why = None, repr(e)
    d.check(f"{how}: the new frontend's first request succeeds",
            text is not None and text.strip() == PROMPT, f"{text!r} {why}")
    d.check(f"{how}: it was up and serving within 5 s", time.time() - t0 < 5,
            f"{time.time() - t0:.1f} s")
    models = json.loads(d.http_get(f2.url + "/v1/models")[1])
    d.check(f"{how}: /v1/models lists the model", [m["id"] for m in models["data"]] == [NAME],
            str(models))
    workers_gauge = d.metric(d.http_get(f2.url + "/metrics")[1], "dyn_frontend_workers",
                             model=NAME)
    d.check(f"{how}: it counts both workers", workers_gauge == 2, f"{workers_gauge}")
    before = served(workers)
    for _ in range(4):
        complete(f2)
    after = served(workers)
    d.check(f"{how}: requests reach both workers",
            all(a > b for a, b in zip(after, before)), f"{before} -> {after}")
    f2.stop()


def main():
    deadline = threading.Timer(120, lambda: os._exit(3))
    deadline.daemon = True
    deadline.start()
    workers = [d.worker(delay=1), d.worker(delay=1)]
    restart("crash", signal.SIGKILL, workers)
    restart("restart", signal.SIGTERM, workers)
    d.finish()


if __name__ == "__main__":
    main()
