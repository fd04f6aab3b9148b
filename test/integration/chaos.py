"""chaos - many streams through worker crashes (dyn-frontend(1) FAULT
TOLERANCE, request migration).

Four mock workers (qwen3-0.6b-shape, the timing model at SPEEDUP times
real time, slowed so that streams of a few hundred tokens last seconds at
little CPU) behind two frontends on one store: one with the default
--migration-limit, one with --migration-limit 0.  For each of a few seeds,
a request mix drawn from it: STREAMS (200) streamed completions, each
with its own prompt (1 to 40 words), sampling seed and max_tokens (50 to
160), sent at once through one frontend.  While they run, three of the
four workers (an order drawn from the seed) are SIGKILLed one after
another, at times drawn from the seed, each restarted (a new instance)
before the next kill (its records removed from the store at once, as its
lease ending would later).  This is done once through each frontend, then the
same requests are asked again, not streamed, of the undisturbed workers:
the reference texts.  Checked, per seed:
- migration on: every stream completes: 200, no error event, [DONE] and
  nothing after it, finish "length", as many tokens as its max_tokens
  counted on the client (one logprobs entry per token) and in the usage;
  each text is the reference (the mock engine draws each token from the
  seed and its position, so a migrated request's tokens are the
  uninterrupted ones: no token lost, repeated or changed); the frontend
  counted migrations and no migration failure;
- migration off: some streams fail (the kills hit running streams) and
  every failure is clean: a stream that had begun ends with one error
  event of type service_unavailable, then [DONE], then the end of the
  response, and its text so far is a prefix of the reference; one
  that had not begun is answered 503 service_unavailable; none hangs
  (each is read with a timeout, the whole test runs under a deadline);
  every other stream is complete and exact as above; the frontend counted
  as many migration failures as clients saw.
"""
import concurrent.futures
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "pylib"))
import dynproc as d  # noqa: E402

SHAPE = os.path.abspath(os.path.join(d.TOP, "..", "shared", "models", "qwen3-0.6b-shape"))
NAME = "qwen3-0.6b-shape"
STREAMS = 200
SEEDS = (1, 2)
SPEEDUP = 0.25	# about 23 ms a decode step
WORDS = "the quick brown fox jumps over a lazy dog while seven wizards quietly hex".split()


def worker():
    w = d.Proc(["serve", "--model", SHAPE, "--engine", "mock", "--system-port", "0",
                "--speedup-ratio", str(SPEEDUP)], r"instance ([0-9a-f]{16}) .* system port (\d+)", timeout=60)
    w.id = w.m.group(1)
    return w


def forget(w):
    """Remove a killed worker's records, as its lease ending would, but at
    once: leases short enough to end within the test expire live workers'
    too when a loaded machine delays their renewals."""
    for key in (f"v1/instances/dyn/backend/generate/{w.id}", f"v1/models/{NAME}/{w.id}"):
        subprocess.run([d.DYN, "store", "rm", "--store", d.store, key], capture_output=True)


def fe_metric(f, name, **labels):
    return d.metric(d.http_get(f.url + "/metrics")[1], name, **labels) or 0


def mix(seed):
    """The seed's requests: (prompt, sampling seed, max_tokens) each."""
    rng = random.Random(seed)
    return [(f"request {i} of mix {seed}: " + " ".join(rng.choices(WORDS, k=rng.randint(1, 40))),
             seed * 1000 + i, rng.randint(50, 160)) for i in range(STREAMS)]


class Stream:
    """One streamed completion, read to the end: status, text, tokens (its
    logprobs entries), finish, usage, error (the error object of an error
    event or of a non-200 answer), after_error (events after an error
    event), done ([DONE] seen), tail (what came after [DONE] but blank
    lines), exc."""

    def __init__(self, url, req, seen, key):
        prompt, seed, n = req
        body = {"model": NAME, "prompt": prompt, "max_tokens": n, "seed": seed,
                "stream": True, "logprobs": 0, "stream_options": {"include_usage": True}}
        self.status, self.text, self.tokens, self.finish, self.usage = None, "", 0, None, None
        self.error, self.after_error, self.done, self.tail, self.exc = None, 0, False, b"", None
        r = urllib.request.Request(url + "/v1/completions", json.dumps(body).encode(),
                                     {"content-type": "application/json"})
        try:
            with urllib.request.urlopen(r, timeout=60) as resp:
                self.status = resp.status
                self.read(resp, seen, key)
        except urllib.error.HTTPError as e:
            self.status = e.code
            self.error = json.loads(e.read()).get("error")
        except Exception as e:  # noqa: BLE001
            self.exc = repr(e)

    def read(self, resp, seen, key):
        for ev in d.sse_events(resp):
            if ev is None:
                self.done = True
                self.tail = resp.read().strip()
                return
            if self.error:
                self.after_error += 1
            if "error" in ev:
                self.error = ev["error"]
                continue
            self.usage = ev.get("usage") or self.usage
            for c in ev.get("choices") or []:
                self.text += c.get("text") or ""
                self.tokens += len((c.get("logprobs") or {}).get("tokens") or [])
                self.finish = c.get("finish_reason") or self.finish
                seen.add(key)

    def complete(self, n, want):
        """Why this is not a complete stream of n tokens with text want
        (None if it is)."""
        if self.status != 200 or self.error or self.exc:
            return f"status {self.status}, error {self.error}, {self.exc}"
        if not self.done or self.tail:
            return f"[DONE] {self.done}, after it {self.tail[:80]!r}"
        if self.finish != "length" or self.tokens != n or \
           (self.usage or {}).get("completion_tokens") != n:
            return f"finish {self.finish}, {self.tokens} tokens, usage {self.usage}, want {n}"
        if self.text != want:
            return "text differs from the undisturbed run's"
        return None

    def clean_failure(self, want):
        """Why this is not a clean failure (None if it is)."""
        if self.exc:
            return self.exc
        err = self.error or {}
        if err.get("type") != "service_unavailable":
            return f"status {self.status}, error {self.error}"
        if self.status == 503:	# refused before the stream began
            return None
        if self.status != 200 or not self.done or self.tail or self.after_error:
            return (f"status {self.status}, [DONE] {self.done}, {self.after_error} events "
                    f"after the error, after [DONE] {self.tail[:80]!r}")
        if self.finish is not None or not want.startswith(self.text):
            return f"finish {self.finish}; text not a prefix of the undisturbed one"
        return None


def storm(f, reqs, workers, rng):
    """Send reqs at once through f, kill and restart three workers while
    they run; the streams and the seconds it took."""
    seen = set()
    t0 = time.time()
    with concurrent.futures.ThreadPoolExecutor(len(reqs)) as ex:
        futs = [ex.submit(Stream, f.url, r, seen, i) for i, r in enumerate(reqs)]
        d.wait_until(lambda: len(seen) == len(reqs), 30)
        for i in rng.sample(range(len(workers)), 3):
            time.sleep(rng.uniform(0.1, 0.6))
            workers[i].p.send_signal(signal.SIGKILL)
            workers[i].p.wait()
            forget(workers[i])
            workers[i] = worker()
        got = [fu.result() for fu in futs]
    return got, time.time() - t0


def reference(f, reqs):
    """The texts of reqs asked again, not streamed, of undisturbed workers."""
    def one(req):
        prompt, seed, n = req
        body = {"model": NAME, "prompt": prompt, "max_tokens": n, "seed": seed}
        r = urllib.request.Request(f.url + "/v1/completions", json.dumps(body).encode(),
                                     {"content-type": "application/json"})
        with urllib.request.urlopen(r, timeout=60) as resp:
            return json.loads(resp.read())["choices"][0]["text"]
    with concurrent.futures.ThreadPoolExecutor(len(reqs)) as ex:
        return list(ex.map(one, reqs))


def main():
    deadline = threading.Timer(150, lambda: os._exit(3))
    deadline.daemon = True
    deadline.start()
    on = d.frontend()
    off = d.frontend(["--migration-limit", "0"])
    workers = [worker() for _ in range(4)]

    def four():	# the killed instances forgotten
        return all(fe_metric(f, "dyn_frontend_workers", model=NAME) == 4 for f in (on, off))
    d.check("four workers", d.wait_until(four, 30))
    for seed in SEEDS:
        reqs, rng = mix(seed), random.Random(-seed)
        mig0 = fe_metric(on, "dyn_frontend_migrations_total")
        got, took = storm(on, reqs, workers, rng)
        mig = fe_metric(on, "dyn_frontend_migrations_total") - mig0
        mfail = fe_metric(on, "dyn_frontend_migration_failures_total")
        d.check(f"seed {seed}: four workers again", d.wait_until(four, 30))
        fail0 = fe_metric(off, "dyn_frontend_migration_failures_total")
        got_off, took_off = storm(off, reqs, workers, rng)
        fails = fe_metric(off, "dyn_frontend_migration_failures_total") - fail0
        d.check(f"seed {seed}: four workers after both", d.wait_until(four, 30))
        want = reference(on, reqs)

        bad = {i: why for i, s in enumerate(got)
               if (why := s.complete(reqs[i][2], want[i]))}
        d.check(f"seed {seed}: migration on: all {STREAMS} streams complete with every token "
                f"of the undisturbed run through three crashes ({took:.1f} s)", not bad,
                f"{len(bad)} bad: {list(bad.items())[:3]}")
        d.check(f"seed {seed}: migrations counted ({mig:.0f}), no failure",
                mig >= 3 and mfail == 0, f"{mig} migrations, {mfail} failures")
        failed = [i for i, s in enumerate(got_off) if s.status != 200 or s.error or s.exc]
        unclean = {i: why for i in failed if (why := got_off[i].clean_failure(want[i]))}
        whole = {i: why for i, s in enumerate(got_off) if i not in failed and
                 (why := s.complete(reqs[i][2], want[i]))}
        d.check(f"seed {seed}: migration off: {len(failed)} streams fail, each cleanly "
                f"({took_off:.1f} s)", failed and not unclean,
                f"{len(unclean)} unclean: {list(unclean.items())[:3]}")
        d.check(f"seed {seed}: migration off: the {STREAMS - len(failed)} others complete "
                "and exact", not whole, f"{len(whole)} bad: {list(whole.items())[:3]}")
        d.check(f"seed {seed}: migration off: the frontend counted each failure",
                fails == len(failed), f"{fails} counted, {len(failed)} seen")
    d.finish()


if __name__ == "__main__":
    main()
