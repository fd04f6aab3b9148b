#!/usr/bin/env python3
"""chaos.py - request migration under repeated worker crashes ('make
bench', via chaos.sh; the larger sibling of test/integration/chaos.py).

Four mock workers (qwen3-0.6b-shape, --engine mock at SPEEDUP times real
time, default 0.5: about 11.5 ms a decode step; --lease-ttl 3 s, so that a
killed worker's records are gone before the frontend's 5 s of avoiding it
end) behind one frontend with the default --migration-limit.  One seeded open-loop schedule: REQUESTS
(default 1200) streamed completions arriving as a Poisson process at RATE
req/s (default 25), each with its own prompt (PROMPT_WORDS, default up to
200 words), sampling seed and max_tokens (MIN_OSL to MAX_OSL, default 100
to 300), which keeps about 50 streams running on the workers.  The
schedule is played twice in this invocation:
  - nokill: undisturbed;
  - kill: KILLS (default 6) times, evenly spread over the middle of the
    schedule, a worker (another one than the last, in a seeded order) is
    SIGKILLed and restarted at once (a new instance).
The client (one thread a request, this script) times every token event.
Reported: failed requests (not 200, an error event, no [DONE], or fewer
tokens than max_tokens in the usage; the target is 0, and any makes the
benchmark fail), TTFT and ITL p50/p99 of each run and their ratios (kill
/ nokill), the migrations, and for each kill the time from the kill to
the last of its worker's requests resumed.  Method for that: the
frontend's JSON log (DYN_LOG=info, DYN_LOG_FORMAT=json) names each
request migrated off each worker ("<id>: migrating from worker <X>");
with the time the frontend decided it; a migrated request's
resumption is its first token from the new worker: the token event
ending the largest gap in its stream that spans the kill (began before
the migration's log time, plus 50 ms for this client's lag, and ended
after the kill), the gap covering the kill, the frontend noticing and
the new worker's prefill of prompt and tokens so far (a request still
waiting for its first token counts from its send).  Times are this
script's clock (the log's converted from the wall clock), a kill's time
the moment its SIGKILL was sent.
"""
import datetime
import http.client
import json
import os
import random
import re
import signal
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration", "pylib"))
import dynproc as d  # noqa: E402

MODEL = os.path.abspath(os.path.join(d.TOP, "..", "shared", "models", "qwen3-0.6b-shape"))
NAME = "qwen3-0.6b-shape"
env = os.environ.get

SPEEDUP = float(env("SPEEDUP", "0.5"))
REQUESTS = int(env("REQUESTS", "1200"))
RATE = float(env("RATE", "25"))
MIN_OSL = int(env("MIN_OSL", "100"))
MAX_OSL = int(env("MAX_OSL", "300"))
PROMPT_WORDS = int(env("PROMPT_WORDS", "200"))
KILLS = int(env("KILLS", "6"))
SEED = int(env("SEED", "1"))
WORDS = "the quick brown fox jumps over a lazy dog while seven wizards quietly hex".split()


def schedule():
    """(arrival s, prompt, seed, max_tokens) of each request."""
    rng = random.Random(SEED)
    t, out = 0.0, []
    for i in range(REQUESTS):
        prompt = f"request {i}: " + " ".join(rng.choices(WORDS, k=rng.randint(1, PROMPT_WORDS)))
        out.append((t, prompt, SEED * 100000 + i, rng.randint(MIN_OSL, MAX_OSL)))
        t += rng.expovariate(RATE)
    return out


class Req(threading.Thread):
    """One streamed completion sent at its time: sent, times (of each token
    event), id, usage, error, done."""

    def __init__(self, port, t0, item):
        super().__init__(daemon=True)
        self.port, self.t0, self.item = port, t0, item
        self.sent, self.times, self.id, self.usage = None, [], None, None
        self.error, self.done, self.status = None, False, None

    def run(self):
        at, prompt, seed, n = self.item
        body = json.dumps({"model": NAME, "prompt": prompt, "max_tokens": n, "seed": seed,
                           "stream": True, "stream_options": {"include_usage": True}})
        time.sleep(max(0.0, self.t0 + at - time.monotonic()))
        self.sent = time.monotonic()
        try:
            c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
            c.request("POST", "/v1/completions", body, {"content-type": "application/json"})
            r = c.getresponse()
            self.status = r.status
            if r.status != 200:
                self.error = r.read().decode()[:200]
                return
            for raw in r:
                now = time.monotonic()
                if not raw.startswith(b"data: "):
                    continue
                if raw.startswith(b"data: [DONE]"):
                    self.done = True
                    break
                ev = json.loads(raw[6:])
                if "error" in ev:
                    self.error = ev["error"]
                    continue
                self.id = ev.get("id", self.id)
                self.usage = ev.get("usage") or self.usage
                if any(ch.get("text") for ch in ev.get("choices") or []):
                    self.times.append(now)
            c.close()
        except Exception as e:  # noqa: BLE001
            self.error = repr(e)

    def failed(self):
        return (self.status != 200 or self.error is not None or not self.done or
                (self.usage or {}).get("completion_tokens") != self.item[3])

    def resumed(self, kill, migrated):
        """End of the largest gap in this stream that spans the kill and
        began before migrated (+ 50 ms), the send counting as an event."""
        ts = [self.sent] + self.times
        gaps = [(ts[i] - ts[i - 1], ts[i]) for i in range(1, len(ts))
                if ts[i] > kill and ts[i - 1] < migrated + 0.05]
        return max(gaps)[1] if gaps else None


def worker():
    w = d.Proc(["serve", "--model", MODEL, "--engine", "mock", "--system-port", "0",
                "--lease-ttl", "3000", "--speedup-ratio", str(SPEEDUP)],
               r"instance ([0-9a-f]{16}) .* system port (\d+)", timeout=60)
    w.id = w.m.group(1)
    return w


def run(label, sched, kills):
    """Play sched through a fresh frontend and four workers; kills: the
    (time s, worker index) of each kill.  The requests, the kills done
    (time, worker id), the frontend's migrations {(id, worker id): time},
    the seconds it took and the start time."""
    d.procs.clear()
    d.store = "file://" + os.path.join(d.tmp, "store-" + label)
    workers = [worker() for _ in range(4)]
    fe = d.Proc(["frontend", "--http-port", "0", "--http-host", "127.0.0.1"],
                r"listening on http://[^:]+:(\d+)",
                env={"DYN_LOG": "warn,frontend=info", "DYN_LOG_FORMAT": "json"})
    port = int(fe.m.group(1))
    url = f"http://127.0.0.1:{port}"
    if not d.wait_until(lambda: d.metric(d.http_get(url + "/metrics")[1],
                                         "dyn_frontend_workers", model=NAME) == 4, 60):
        raise RuntimeError(f"{label}: workers did not all register: {fe.stderr()}")
    clock = time.time() - time.monotonic()	# wall clock less monotonic
    t0 = time.monotonic() + 0.5
    reqs = [Req(port, t0, it) for it in sched]
    for r in reqs:
        r.start()
    done = []
    for at, i in kills:
        time.sleep(max(0.0, t0 + at - time.monotonic()))
        victim = workers[i]
        done.append((time.monotonic(), victim.id))
        victim.p.send_signal(signal.SIGKILL)
        victim.p.wait()
        workers[i] = worker()
    for r in reqs:
        r.join(300)
    took = time.monotonic() - t0
    migrated = {}
    fe.log.flush()
    with open(fe.log.name) as fh:
        for line in fh:
            try:
                ev = json.loads(line)
            except ValueError:
                continue
            m = re.match(r"(\S+): migrating from worker ([0-9a-f]{16})", ev.get("msg", ""))
            if m:
                wall = datetime.datetime.strptime(ev["time"], "%Y-%m-%dT%H:%M:%S.%fZ")
                wall = wall.replace(tzinfo=datetime.timezone.utc).timestamp()
                migrated[(m.group(1), m.group(2))] = wall - clock

    for p in reversed(d.procs):
        p.stop()
    return reqs, done, migrated, took, t0


def figures(reqs):
    ok = [r for r in reqs if r.times]
    ttft = [(r.times[0] - r.sent) * 1000 for r in ok]
    itl = [(b - a) * 1000 for r in ok for a, b in zip(r.times, r.times[1:])]
    return {"ttft_p50": d.pct(ttft, 50), "ttft_p99": d.pct(ttft, 99),
            "itl_p50": d.pct(itl, 50), "itl_p99": d.pct(itl, 99), "itl_max": max(itl, default=0),
            "failed": sum(r.failed() for r in reqs)}


def main():
    sched = schedule()
    span = sched[-1][0]
    rng = random.Random(SEED)
    kills, last = [], None
    for k in range(KILLS):	# evenly over the middle 60% of the schedule
        i = rng.choice([w for w in range(4) if w != last])
        kills.append((span * (0.2 + 0.6 * k / max(1, KILLS - 1)), i))
        last = i
    print(f"chaos: {REQUESTS} streamed requests, Poisson {RATE:g} req/s ({span:.0f} s), "
          f"max_tokens {MIN_OSL}-{MAX_OSL}, prompts of up to {PROMPT_WORDS} words; 4 mock "
          f"workers ({NAME}, speedup-ratio {SPEEDUP:g}), one frontend; {KILLS} SIGKILLs "
          f"with restart at " + ", ".join(f"{at:.1f} s (w{i})" for at, i in kills))
    sys.stdout.flush()
    base, _, base_mig, took0, _ = run("nokill", sched, [])
    reqs, done, migrated, took, t0 = run("kill", sched, kills)
    a, b = figures(reqs), figures(base)
    print(f"runs took {took0:.1f} s (nokill), {took:.1f} s (kill)")
    print(f"{'':16s} {'kill':>10s} {'nokill':>10s}   ratio")
    for key in ("ttft_p50", "ttft_p99", "itl_p50", "itl_p99", "itl_max"):
        print(f"{key + ' (ms)':16s} {a[key]:10.2f} {b[key]:10.2f}   {a[key] / b[key]:6.3f}")
    print(f"{'failed requests':16s} {a['failed']:10d} {b['failed']:10d}")
    for r in reqs + base:
        if r.failed():
            print(f"  failed: {r.id or r.item[2]}: status {r.status}, error {r.error}, "
                  f"done {r.done}, usage {r.usage}, want {r.item[3]}")
    byid = {r.id: r for r in reqs if r.id}
    resume = []
    print(f"migrations: {len(migrated)} of {len({i for i, _ in migrated})} requests "
          f"(nokill run: {len(base_mig)})")
    for k, (tk, wid) in enumerate(done):
        off = [(byid[i], tm) for (i, w), tm in migrated.items() if w == wid and i in byid]
        ts = [t for t in (r.resumed(tk, tm) for r, tm in off) if t is not None]
        last = (max(ts) - tk) * 1000 if ts else float("nan")
        med = d.pct([(t - tk) * 1000 for t in ts], 50)
        resume.append(last)
        print(f"kill {k + 1} at {tk - t0:6.1f} s, worker {wid}: "
              f"{len(off)} requests migrated off it, resumed after {med:.0f} ms (median), "
              f"the last after {last:.0f} ms" +
              (f" ({len(off) - len(ts)} with no such gap)" if len(ts) < len(off) else ""))
    print(f"FIGURE chaos.failed_requests {a['failed']} requests - -")
    for key in ("ttft_p50", "ttft_p99", "itl_p50", "itl_p99"):
        print(f"FIGURE chaos.{key} {a[key]:.3f} ms {a[key] / b[key]:.3f} nokill_same_schedule")
    print(f"FIGURE chaos.migrations {len(migrated)} migrations - -")
    print(f"FIGURE chaos.kill_to_last_resumed_max {max(resume):.1f} ms - -")
    print(f"FIGURE chaos.kill_to_last_resumed_p50 {d.pct(resume, 50):.1f} ms - -")
    return 1 if a["failed"] or b["failed"] else 0


if __name__ == "__main__":
    d.run_bench(main)
