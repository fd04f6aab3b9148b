"""plannerproc - what the live planner tests share (dynproc does the rest):
a `dyn planner` whose decision lines are read as they come, and a load
of completion clients that ramps up and drops.
"""
import atexit
import json
import os
import subprocess
import threading
import time
import urllib.request

import dynproc as d


class Planner:
    """dyn planner with args (DYN_STORE the test's store, env added), its
    standard error in planner.err; SIGTERM at exit (so that it stops the
    workers it started), SIGKILL if it has not stopped 70 s later."""

    def __init__(self, args, env=None):
        self.errlog = open(os.path.join(d.tmp, "planner.err"), "w+")
        self.p = subprocess.Popen([d.DYN, "planner"] + args, stdout=subprocess.PIPE,
                                  stderr=self.errlog, text=True,
                                  env=dict(os.environ, DYN_STORE=d.store, **(env or {})))
        self.seen = []	# (time read, decision)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        atexit.register(self.stop)

    def _read(self):
        for line in self.p.stdout:
            try:
                self.seen.append((time.time(), json.loads(line)))
            except ValueError:
                pass

    def decisions(self):
        return [x for _, x in list(self.seen)]

    def err(self):
        self.errlog.seek(0)
        return self.errlog.read()

    def stop(self):
        if self.p.poll() is None:
            self.p.terminate()
            try:
                self.p.wait(timeout=70)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()


class Load:
    """n clients, each asking url for body's completion in a loop: client 0
    until stop(), the others for the burst given to start().  results:
    (ok, detail) per request, ok when it answered 200 with a finished
    completion."""

    def __init__(self, url, n, body):
        self.url, self.body, self.n = url, body, n
        self.results, self.stop_at, self.threads = [], {}, []

    def _client(self, k):
        while time.time() < self.stop_at[k]:
            req = urllib.request.Request(self.url + "/v1/completions",
                                         json.dumps(self.body).encode(),
                                         {"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(req, timeout=60) as r:
                    a = json.loads(r.read())
                    fin = a["choices"][0]["finish_reason"]
                    self.results.append((r.status == 200 and fin in ("length", "stop"), fin))
            except Exception as e:  # noqa: BLE001 - any failure is the finding
                self.results.append((False, repr(e)))

    def start(self, burst_s):
        """Start the clients; the time they started."""
        t0 = time.time()
        for k in range(self.n):
            self.stop_at[k] = t0 + burst_s if k else t0 + 1e6
        self.threads = [threading.Thread(target=self._client, args=(k,))
                        for k in range(self.n)]
        for t in self.threads:
            t.start()
        return t0

    def drop(self):
        """Wait for the burst's clients to end: one client left."""
        for t in self.threads[1:]:
            t.join()

    def stop(self):
        self.stop_at[0] = 0
        self.threads[0].join()

    def failed(self):
        return [r for r in self.results if not r[0]]
