"""chaos - many streams through worker crashes (dyn-frontend(1) FAULT
TOLERANCE, request migration).

Four mock workers (qwen3-0.6b-shape, real-time timing model) behind a
frontend with the default --migration-limit; 100 concurrent streamed
completions of 300 tokens, each with its own seed.  While they run, three
workers are SIGKILLed one after another, each restarted (a new instance)
at once.  Checked:
- every stream completes: 200, no error event, [DONE], finish "length",
  usage 300 completion tokens;
- each text is the one the same seeded request gets afterwards from the
  undisturbed workers (the mock engine draws each token from the seed and
  its position, so a migrated request's tokens are the uninterrupted
  ones: no token lost, repeated or changed);
- the frontend counted migrations and no migration failure.
"""
import concurrent.futures
import json
import os
import signal
import sys
import threading
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "pylib"))
import dynproc as d  # noqa: E402

SHAPE = os.path.abspath(os.path.join(d.TOP, "..", "shared", "models", "qwen3-0.6b-shape"))
NAME = "qwen3-0.6b-shape"
STREAMS, TOKENS = 100, 300


def worker():
    w = d.Proc(["serve", "--model", SHAPE, "--engine", "mock", "--system-port", "0",
                "--lease-ttl", "1500"], r"instance ([0-9a-f]{16}) .* system port (\d+)",
               timeout=60)
    w.id = w.m.group(1)
    return w


def fe_metric(f, name, **labels):
    return d.metric(d.http_get(f.url + "/metrics")[1], name, **labels) or 0


def stream(url, seed, seen):
    """(status, text, finish, usage, error, done) of one streamed completion."""
    body = {"model": NAME, "prompt": f"story number {seed}:", "max_tokens": TOKENS,
            "seed": seed, "stream": True, "stream_options": {"include_usage": True}}
    req = urllib.request.Request(url + "/v1/completions", json.dumps(body).encode(),
                                 {"content-type": "application/json"})
    text, finish, usage, error, done = "", None, None, None, False
    try:
        with urllib.request.urlopen(req, timeout=90) as r:
            for raw in r:
                line = raw.decode().strip()
                if not line.startswith("data: "):
                    continue
                if line == "data: [DONE]":
                    done = True
                    break
                ev = json.loads(line[6:])
                if "error" in ev:
                    error = ev["error"]
                    continue
                usage = ev.get("usage") or usage
                for c in ev.get("choices") or []:
                    text += c.get("text") or ""
                    finish = c.get("finish_reason") or finish
                    seen[seed] = True
            return r.status, text, finish, usage, error, done
    except Exception as e:  # noqa: BLE001
        return None, text, finish, usage, repr(e), done


def main():
    deadline = threading.Timer(120, lambda: os._exit(3))
    deadline.daemon = True
    deadline.start()
    f = d.frontend()
    workers = [worker() for _ in range(4)]
    ok = d.wait_until(lambda: fe_metric(f, "dyn_frontend_workers", model=NAME) == 4, 30)
    d.check("four workers", ok)
    seen = {}
    t0 = time.time()
    with concurrent.futures.ThreadPoolExecutor(STREAMS) as ex:
        futs = {s: ex.submit(stream, f.url, s, seen) for s in range(STREAMS)}
        d.wait_until(lambda: len(seen) == STREAMS, 30)
        for i in range(3):	# kill and restart three of the four, in turn
            time.sleep(0.3)
            workers[i].p.send_signal(signal.SIGKILL)
            workers[i].p.wait()
            workers[i] = worker()
        got = {s: fu.result() for s, fu in futs.items()}
    took = time.time() - t0
    bad = {s: (r[0], r[2], r[3], r[4], r[5]) for s, r in got.items()
           if r[0] != 200 or r[4] or not r[5] or r[2] != "length" or
           not r[3] or r[3]["completion_tokens"] != TOKENS}
    d.check(f"all {STREAMS} streams complete with {TOKENS} tokens through three crashes "
            f"({took:.1f} s)", not bad, f"{len(bad)} bad: {list(bad.items())[:3]}")
    migrated = fe_metric(f, "dyn_frontend_migrations_total")
    failed = fe_metric(f, "dyn_frontend_migration_failures_total")
    d.check(f"migrations counted ({migrated:.0f}), no failure", migrated >= 3 and failed == 0,
            f"{migrated} migrations, {failed} failures")

    # The same requests on undisturbed workers: the same texts.
    with concurrent.futures.ThreadPoolExecutor(STREAMS) as ex:
        again = dict(zip(range(STREAMS), ex.map(lambda s: stream(f.url, s, {}),
                                                range(STREAMS))))
    diff = [s for s in range(STREAMS) if again[s][1] != got[s][1] or again[s][0] != 200]
    d.check("each text is the uninterrupted one (seeded mock tokens)", not diff,
            f"{len(diff)} differ, e.g. seed {diff[:1]}")
    d.finish()


if __name__ == "__main__":
    main()
