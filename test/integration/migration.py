"""migration - request migration in the frontend (dyn-frontend(1) FAULT
TOLERANCE): a stream whose worker dies or drains goes on on another worker
and the client sees one uninterrupted answer.

stories260K on the builtin engine, greedy.  The reference is the model's
published greedy output (../shared/models/stories260K/
expected_greedy_from_bos.txt, 200 tokens after BOS), and for what that
file does not fix (chat, logprobs, usage) the same request answered by an
undisturbed worker.

To cut a stream after k tokens, deterministically: one worker W is live;
it is stopped (SIGSTOP) before the request is sent, so the request is
routed to it and waits; a second worker N starts; W is then let run in
short slices (SIGCONT, SIGSTOP) until the frontend has counted k tokens
(dyn_frontend_output_tokens_total), and is killed (SIGKILL) while stopped,
its store records removed so N is the only worker afterwards.  k = 0 is
the case of a worker that dies before its first token.  Checked, for
completions and chat, streamed and not:
- the answer is the reference (greedy; and a seeded sample at
  temperature 1, which the engine draws per position, so a migrated
  request samples as it would have): the same text, token for token, the
  same logprobs (to float rounding: the new worker prefills what the old
  one decoded), finish reason and usage (prompt tokens once, completion
  tokens the total), one id across every chunk;
- dyn_frontend_migrations_total{cause="disconnect"} counts each;
- SIGTERM to the busy worker with --grace-period 0.2: its stream ends
  with the "migrate:" error, which the frontend migrates (cause
  "draining"), the answer is the reference, and the worker exits 0;
- a frontend with --migration-limit 0 ends a cut stream with an error
  event (503, service_unavailable) and [DONE], answers a cut non-streamed
  request with 503, and counts
  dyn_frontend_migration_failures_total{reason="limit"};
- a model with no worker left: the same clean errors (reason
  "no_worker"); /metrics passes promtool;
- disaggregated: a request prefilled on a prefill worker, its decode
  worker killed after k tokens, goes on on another decode worker that
  prefills locally (no second remote decision, no KV fetch there).
"""
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "pylib"))
import dynproc as d  # noqa: E402

NAME = "stories260K"
TOKENS = 200
# The worker paused between slices must not be found unhealthy meanwhile
# (health.py tests that).
NO_CHECKS = ["--health-check-interval", "0"]
with open(os.path.join(d.MODEL, "expected_greedy_from_bos.txt")) as fh:
    WANT = fh.read()


def body(kind, stream):
    """kind: "completion", "chat", "long" (a completion of 400 tokens),
    "seeded" (a completion sampled at temperature 1 with a seed) or
    "disagg" (a completion of a prompt of several KV blocks)."""
    b = {"model": NAME, "max_tokens": TOKENS, "temperature": 0, "stream": stream}
    if kind == "long":
        b.update(max_tokens=2 * TOKENS, ignore_eos=True)
    if kind == "seeded":
        b.update(temperature=1.0, seed=1234, ignore_eos=True)
    if stream:
        b["stream_options"] = {"include_usage": True}
    if kind == "chat":
        b.update(messages=[{"role": "user", "content": "Once upon a time"}], logprobs=True,
                 top_logprobs=2)
    elif kind == "disagg":	# whole KV blocks to move
        b.update(prompt="Once upon a time, there was a little girl named Lily. She loved to "
                 "play outside in the park with her friends and her dog.", logprobs=2)
    else:
        b.update(prompt="", logprobs=2)
    return b


def lp_entries(lp):
    """(token, logprob, top alternatives) of a logprobs object of either API."""
    if not lp:
        return []
    if "content" in lp:
        return [(e["token"], e["logprob"],
                 sorted((t["token"], t["logprob"]) for t in e["top_logprobs"]))
                for e in lp["content"] or []]
    return [(t, p, sorted(top.items()))
            for t, p, top in zip(lp["tokens"], lp["token_logprobs"], lp["top_logprobs"])]


class Call(threading.Thread):
    """One request, answered into: status, ids (every chunk's), text,
    logprobs, finish, usage, error, done ([DONE] seen)."""

    def __init__(self, url, kind, stream):
        super().__init__(daemon=True)
        self.kind, self.stream = kind, stream
        path = "/v1/chat/completions" if kind == "chat" else "/v1/completions"
        self.req = urllib.request.Request(url + path, json.dumps(body(kind, stream)).encode(),
                                          {"content-type": "application/json"})
        self.status, self.ids, self.text, self.lps = None, set(), "", []
        self.finish, self.usage, self.error, self.done, self.exc = None, None, None, False, None
        self.start()

    def take(self, ch):
        self.ids.add(ch["id"])
        if ch.get("usage"):
            self.usage = ch["usage"]
        for c in ch.get("choices") or []:
            if self.kind == "chat":
                part = c.get("delta", c.get("message", {})).get("content")
            else:
                part = c.get("text")
            self.text += part or ""
            self.lps += lp_entries(c.get("logprobs"))
            self.finish = c.get("finish_reason") or self.finish

    def run(self):
        try:
            with urllib.request.urlopen(self.req, timeout=60) as r:
                self.status = r.status
                if not self.stream:
                    self.take(json.loads(r.read()))
                    self.done = True
                    return
                for ev in d.sse_events(r):
                    if ev is None:
                        self.done = True
                        break
                    if "error" in ev:
                        self.error = ev["error"]
                    else:
                        self.take(ev)
        except urllib.error.HTTPError as e:
            self.status = e.code
            self.error = json.loads(e.read()).get("error")
        except Exception as e:  # noqa: BLE001
            self.exc = repr(e)

    def result(self):
        return (self.text, self.lps, self.finish, self.usage)


def fe_metric(f, name, **labels):
    return d.metric(d.http_get(f.url + "/metrics")[1], name, **labels) or 0


def workers_seen(f, role=None):
    if role:
        return fe_metric(f, "dyn_frontend_workers", model=NAME, role=role)
    return fe_metric(f, "dyn_frontend_workers", model=NAME)


def new_worker(extra=()):
    # a long lease: a stopped worker renews none; F32 K/V: lps_match's float
    # rounding is the F32 pool's (16-bit K/V computed in a prefill round at
    # times to other neighbours than the same K/V computed in decode steps)
    return d.worker(["--threads", "1", "--kv-cache-dtype", "f32"] + list(extra), engine="auto",
                    ttl=60000)


def forget(w):
    """Remove a killed worker's records, as its lease ending would."""
    for key in (f"v1/instances/dyn/backend/generate/{w.id}", f"v1/models/{NAME}/{w.id}"):
        subprocess.run([d.DYN, "store", "rm", "--store", d.store, key], capture_output=True)


class Cluster:
    """The frontends, the live worker, and cutting its streams."""

    def __init__(self, fes, role="agg"):
        self.fes, self.role = fes, role
        self.w = new_worker(["--role", role])
        for f in fes:
            d.wait_until(lambda: workers_seen(f, role) == 1)

    def cut(self, f, kind, stream, k, drain=False, replace=True):
        """A request on the live worker, which is killed (or drained) after
        k tokens; a new worker takes over (unless not replace).  The call
        and the tokens the frontend had when the worker went."""
        w = self.w
        w.p.send_signal(signal.SIGSTOP)
        base = fe_metric(f, "dyn_frontend_output_tokens_total", model=NAME)
        call = Call(f.url, kind, stream)
        d.wait_until(lambda: fe_metric(f, "dyn_frontend_inflight_requests", model=NAME) == 1)
        time.sleep(0.1)	# routed (to w, the only worker) and sent
        self.w = new_worker(["--role", self.role, "--grace-period", "0.2"]) if replace else None
        for g in self.fes:
            d.wait_until(lambda: workers_seen(g, self.role) == 1 + replace)

        def got():
            return fe_metric(f, "dyn_frontend_output_tokens_total", model=NAME) - base

        def step(run=0.0005, pause=0.01):
            w.p.send_signal(signal.SIGCONT)
            time.sleep(run)
            w.p.send_signal(signal.SIGSTOP)
            time.sleep(pause)

        end = time.time() + 10
        while got() < k and time.time() < end:
            step()
        had = got()
        if drain:
            w.p.send_signal(signal.SIGTERM)
            end = time.time() + 10
            while w.p.poll() is None and time.time() < end:
                step(0, 0.05)	# a few short slices in its grace period
            w.p.send_signal(signal.SIGCONT)
            rc = w.p.wait(10)
            d.check(f"drain: the worker exits 0 (k={k})", rc == 0, f"exit status {rc}")
        else:
            w.p.send_signal(signal.SIGKILL)
            w.p.wait()
            forget(w)
        for g in self.fes:
            d.wait_until(lambda: workers_seen(g, self.role) == replace)
        call.join(60)
        return call, had


def lps_match(a, b):
    """The same tokens and alternatives, the same logprobs but for float
    rounding: the new worker computes the tokens it was given in a
    prefill, the old one had them one decode step at a time."""
    def close(x, y):
        return abs(x - y) <= 1e-4
    return len(a) == len(b) and all(
        ta == tb and close(pa, pb) and [t for t, _ in ka] == [t for t, _ in kb] and
        all(close(x, y) for (_, x), (_, y) in zip(ka, kb))
        for (ta, pa, ka), (tb, pb, kb) in zip(a, b))


def same(name, call, ref, had):
    d.check(f"{name}: cut mid-stream", 0 <= had < ref.usage["completion_tokens"],
            f"{had} tokens before the cut")
    ok = call.status == 200 and call.done and not call.error and not call.exc
    d.check(f"{name}: answered in full", ok, f"{call.status} {call.error} {call.exc}")
    d.check(f"{name}: the text is the uninterrupted one", call.text == ref.text,
            f"{call.text!r} != {ref.text!r}")
    d.check(f"{name}: the logprobs are the uninterrupted ones", lps_match(call.lps, ref.lps),
            next((f"entry {i}: {a} != {b}" for i, (a, b) in enumerate(zip(call.lps, ref.lps))
                  if not lps_match([a], [b])), f"{len(call.lps)} != {len(ref.lps)} entries"))
    d.check(f"{name}: finish and usage are the uninterrupted ones (prompt counted once)",
            (call.finish, call.usage) == (ref.finish, ref.usage),
            f"{call.finish} {call.usage} != {ref.finish} {ref.usage}")
    d.check(f"{name}: one response id", len(call.ids) == 1, f"{call.ids}")


def disagg():
    """A request prefilled on a prefill worker whose decode worker dies
    after k tokens goes on on another decode worker, which prefills the
    prompt and those tokens itself: no second remote prefill."""
    f = d.frontend(["--router-mode", "kv", "--max-local-prefill-length", "0"] + NO_CHECKS)
    pre = new_worker(["--role", "prefill"])
    cl = Cluster([f], "decode")
    d.wait_until(lambda: workers_seen(f, "prefill") == 1)
    ref = Call(f.url, "disagg", True)
    ref.join(30)

    def decided():
        return fe_metric(f, "dyn_frontend_disagg_decisions_total", decision="remote")

    def fetched(w):
        return d.sys_metric(w, "dyn_worker_prefill_total", where="remote")

    d.check("disagg: the reference was prefilled remotely",
            ref.usage["completion_tokens"] > 60 and decided() == 1 and fetched(cl.w) == 1,
            f"{decided()} remote decisions, {fetched(cl.w)} fetched; {ref.text!r}")
    call, had = cl.cut(f, "disagg", True, 15)
    same(f"disagg: decode worker killed after {had} (>= 15) tokens", call, ref, had)
    d.check("disagg: migrated without a second remote prefill",
            decided() == 2 and fetched(cl.w) == 0 and
            fe_metric(f, "dyn_frontend_migrations_total", cause="disconnect") == 1 and
            fe_metric(f, "dyn_frontend_remote_prefill_failures_total") == 0,
            f"{decided()} remote decisions, the new worker fetched {fetched(cl.w)}")
    pre.stop()


def main():
    deadline = threading.Timer(150, lambda: os._exit(3))
    deadline.daemon = True
    deadline.start()
    fe = d.frontend(NO_CHECKS)
    off = d.frontend(["--migration-limit", "0"] + NO_CHECKS)
    cl = Cluster([fe, off])

    refs = {}
    for kind in ("completion", "chat", "long", "seeded"):
        for stream in (False, True) if kind in ("completion", "chat") else (True,):
            c = Call(fe.url, kind, stream)
            c.join(30)
            refs[kind, stream] = c
    d.check("reference: the greedy completion is the published text",
            refs["completion", False].text == WANT and refs["completion", True].text == WANT,
            f"{refs['completion', False].text!r}")
    d.check("reference: the seeded sample is not the greedy text",
            refs["seeded", True].text[:100] != WANT[:100], refs["seeded", True].text)
    d.check("reference: streamed and whole agree (chat)",
            refs["chat", False].result() == refs["chat", True].result() and
            refs["chat", True].lps and refs["chat", True].usage["completion_tokens"] > 60,
            f"{refs['chat', False].result()} {refs['chat', True].result()}")

    n = 0
    for kind, stream, k in (("completion", True, 0), ("completion", True, 5),
                            ("completion", True, 60), ("completion", False, 12),
                            ("chat", True, 9), ("chat", False, 0), ("chat", False, 30),
                            ("seeded", True, 25)):
        call, had = cl.cut(fe, kind, stream, k)
        n += 1
        same(f"{kind} stream={stream} killed after {had} (>= {k}) tokens", call,
             refs[kind, stream], had)
        migrated = fe_metric(fe, "dyn_frontend_migrations_total", cause="disconnect")
        d.check(f"{kind} stream={stream} k={k}: counted as a migration (disconnect)",
                migrated == n, f"{migrated} != {n}")

    d.check("reference: the long completion begins with the published text",
            refs["long", True].text.startswith(WANT) and
            refs["long", True].usage["completion_tokens"] == 2 * TOKENS,
            f"{refs['long', True].text!r}")
    call, had = cl.cut(fe, "long", True, 20, drain=True)
    same(f"drained with --grace-period 0.2 after {had} (>= 20) tokens", call,
         refs["long", True], had)
    drained = fe_metric(fe, "dyn_frontend_migrations_total", cause="draining")
    d.check("drain: counted as a migration (draining)", drained == 1, f"{drained}")

    for stream in (True, False):
        call, had = cl.cut(off, "completion", stream, 5)
        if stream:
            d.check("--migration-limit 0, streamed: an error event ends the stream",
                    call.status == 200 and call.error and
                    call.error.get("type") == "service_unavailable" and
                    "connection to the worker was lost" in call.error.get("message", "") and
                    call.done and len(call.text) > 0, f"{call.error} {call.text!r} {call.exc}")
        else:
            d.check("--migration-limit 0, whole: 503",
                    call.status == 503 and call.error and
                    "connection to the worker was lost" in call.error.get("message", ""),
                    f"{call.status} {call.error} {call.exc}")
    fails = fe_metric(off, "dyn_frontend_migration_failures_total", reason="limit")
    d.check("--migration-limit 0: counted as failures (limit), no migration",
            fails == 2 and fe_metric(off, "dyn_frontend_migrations_total") == 0, f"{fails}")

    # No worker left to go on: the last one dies mid-stream.
    for stream in (True, False):
        call, had = cl.cut(fe, "completion", stream, 5, replace=False)
        if stream:
            d.check("no worker left, streamed: an error event (503)",
                    call.status == 200 and call.error and call.done and
                    call.error.get("type") == "service_unavailable",
                    f"{call.status} {call.error} {call.exc}")
        else:
            d.check("no worker left, whole: 503", call.status == 503 and call.error,
                    f"{call.status} {call.error} {call.exc}")
            break
        cl.w = new_worker()
        for g in cl.fes:
            d.wait_until(lambda: workers_seen(g) == 1)
    fails = fe_metric(fe, "dyn_frontend_migration_failures_total", reason="no_worker")
    d.check("no worker left: counted as failures (no_worker)", fails == 2, f"{fails}")
    disagg()
    d.promtool_check("/metrics passes promtool", d.http_get(fe.url + "/metrics")[1])
    d.finish()


if __name__ == "__main__":
    main()
