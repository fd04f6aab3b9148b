"""parallel_n - a request's n samples run at once on one worker, through
the official OpenAI Python SDK (dyn-frontend(1): n).

Mock workers (qwen3-0.6b-shape, `--engine mock`: tokens pure in (seed,
position), so a sample's text does not depend on what it is batched
with).  The reference for choice i of an n-sample request with seed S is
the same request sent alone with n=1 and seed S+i; the engine's own
/metrics say how it ran:
- non-streamed and streamed, completions and chat: every choice equals
  its n=1 reference (text, logprobs, finish_reason), choices in index
  order; the SDK's accumulation of the stream per index equals the
  non-streamed answer; usage counts the prompt once and every sample's
  tokens;
- parallel: the n samples ran in the same engine steps (the worker's
  dyn_worker_engine_steps_total grows by about one sample's tokens, where
  one after the other it grows by n times that), its running-requests
  gauge reached n during a stream, the chunks of the choices interleave,
  and samples 1..n-1 took the prompt's full blocks from the prefix cache
  of the worker sample 0 went to (the other worker got nothing);
- per choice: a stop string ends the choices that contain it (the others
  run to max_tokens), response_format json_schema output validates in
  every choice, echo prefixes each choice with the prompt;
- the client going away cancels every sample on the worker (its active
  requests drop to 0, cancelled count + n);
- the worker dying mid-stream: every sample migrates to the other worker
  and the answer is still the reference;
- one sample failing (its worker stopped: --progress-timeout, no
  migration) fails the request with an error event and cancels the other
  samples on the worker (it finds them all cancelled once it runs again).
An echo worker with a per-token delay shows it in wall time (n=4 takes
about one sample's time, one after the other would take 4 times) and
parses tool calls per choice.
"""
import http.client
import json
import os
import signal
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "pylib"))
import dynproc as d  # noqa: E402

import openai  # noqa: E402

QWEN = os.path.abspath(os.path.join(d.TOP, "..", "shared", "models", "qwen3-0.6b-shape"))
if not os.path.isdir(QWEN):
    d.skip("parallel n", f"no {QWEN}")
    d.finish()
NAME = "qwen3-0.6b-shape"
N = 4


def mock_worker(extra=()):
    w = d.Proc(["serve", "--model", QWEN, "--system-port", "0", "--engine", "mock",
                "--lease-ttl", "2000"] + list(extra),
               r"instance ([0-9a-f]{16}) .* system port (\d+)", timeout=60)
    w.id = w.m.group(1)
    w.sys_port = int(w.m.group(2))
    return w


def wmetric(w, name):
    return d.metric(d.http_get(f"http://127.0.0.1:{w.sys_port}/metrics")[1], name) or 0


def wsum(ws, name):
    return sum(wmetric(w, name) for w in ws if w.p.poll() is None)


workers = [mock_worker() for _ in range(2)]
fe = d.frontend()
client = openai.OpenAI(base_url=fe.url + "/v1", api_key="unused", max_retries=0, timeout=60)


def pools():
    m = json.loads(d.http_get(fe.url + "/v1/models")[1])["data"]
    return [x["dyn"]["pools"]["agg"] for x in m if x["id"] == NAME]


ok = d.wait_until(lambda: pools() == [2], timeout=30)
d.check("two mock workers register", ok, fe.stderr())
if not ok:
    d.finish()

# a prompt of several 64-token KV blocks
PROMPT = " ".join(f"word{i}" for i in range(150))
M = 48


def lp_of(c):
    return c.logprobs.token_logprobs if c.logprobs else None


def refs(seed, n=N, **kw):
    """Choice i of an n-sample request: the request alone, seed + i."""
    out = []
    for i in range(n):
        c = client.completions.create(model=NAME, prompt=PROMPT, seed=seed + i, n=1,
                                      **kw).choices[0]
        out.append((c.text, lp_of(c), c.finish_reason))
    return out


# ---- parallelism in the engine's steps, and the reference -------------------
steps0 = wsum(workers, "dyn_worker_engine_steps_total")
reqs0 = {w.id: wmetric(w, "dyn_worker_requests_total") for w in workers}
hits0 = wsum(workers, "dyn_worker_prefix_cache_hit_tokens_total")
r = client.completions.create(model=NAME, prompt=PROMPT, max_tokens=M, temperature=1.0,
                              logprobs=1, n=N, seed=11)
steps = wsum(workers, "dyn_worker_engine_steps_total") - steps0
hits = wsum(workers, "dyn_worker_prefix_cache_hit_tokens_total") - hits0
served = {w.id: wmetric(w, "dyn_worker_requests_total") - reqs0[w.id] for w in workers}
want = refs(11, max_tokens=M, temperature=1.0, logprobs=1)
d.check("the references differ (distinct seeds)", len({w[0] for w in want}) == N)
got = [(c.text, lp_of(c), c.finish_reason) for c in r.choices]
d.check("n=4: choices in index order", [c.index for c in r.choices] == list(range(N)),
        str([c.index for c in r.choices]))
d.check("n=4: choice i equals the request alone with seed + i (text, logprobs, finish)",
        got == want, f"{got} vs {want}")
d.check("n=4 usage: the prompt once, every sample's tokens",
        r.usage.prompt_tokens == client.completions.create(
            model=NAME, prompt=PROMPT, max_tokens=1).usage.prompt_tokens and
        r.usage.completion_tokens == N * M, str(r.usage))
d.check("n=4: all samples on one worker", sorted(served.values()) == [0, N], str(served))
# one after the other the engine would step N * M times; together about M
d.check(f"n=4: the samples decode in the same engine steps ({steps:.0f} steps for "
        f"{N} x {M} tokens)", M <= steps < 2.5 * M, f"{steps} steps")
ntok = r.usage.prompt_tokens
d.check(f"n=4: samples 1..3 take the prompt's full blocks from the prefix cache "
        f"({hits:.0f} hit tokens)", hits >= (N - 1) * ((ntok - 1) // 64) * 64,
        f"{hits} hits, prompt {ntok} tokens")

# ---- streamed: interleaved chunks, the running gauge, the SDK ---------------
LONG = 160
want_long = refs(5, max_tokens=LONG, temperature=1.0)
peak = [0]
stop_poll = threading.Event()


def poll_running():
    while not stop_poll.is_set():
        peak[0] = max(peak[0], wsum(workers, "dyn_worker_running_requests"))
        time.sleep(0.01)


t = threading.Thread(target=poll_running)
t.start()
order, texts, fins = [], [""] * N, [None] * N
for ch in client.completions.create(model=NAME, prompt=PROMPT, max_tokens=LONG,
                                    temperature=1.0, n=N, seed=5, stream=True):
    for c in ch.choices:
        order.append(c.index)
        texts[c.index] += c.text
        fins[c.index] = c.finish_reason or fins[c.index]
stop_poll.set()
t.join()
d.check("streamed n=4: each index's text and finish equal the request alone",
        [(x, None, f) for x, f in zip(texts, fins)] ==
        [(w[0], None, w[2]) for w in want_long], f"{texts} {fins}")
last0 = max(k for k, i in enumerate(order) if i == 0)
first3 = min(k for k, i in enumerate(order) if i == N - 1)
d.check("streamed n=4: the choices' chunks interleave (the last sample's first chunk "
        "comes before the first sample's last)", first3 < last0, str(order[:40]))
d.check(f"streamed n=4: the worker ran {N} sequences at once (peak "
        f"dyn_worker_running_requests {peak[0]:.0f})", peak[0] >= N, str(peak[0]))

CHAT = [{"role": "user", "content": PROMPT}]
whole = client.chat.completions.create(model=NAME, messages=CHAT, max_tokens=M,
                                       temperature=1.0, n=3, seed=21, logprobs=True)
alone = [client.chat.completions.create(model=NAME, messages=CHAT, max_tokens=M,
                                        temperature=1.0, seed=21 + i,
                                        logprobs=True).choices[0] for i in range(3)]
d.check("chat n=3: choice i equals the request alone with seed + i",
        [(c.index, c.message.content, c.finish_reason,
          [e.logprob for e in c.logprobs.content]) for c in whole.choices] ==
        [(i, c.message.content, c.finish_reason, [e.logprob for e in c.logprobs.content])
         for i, c in enumerate(alone)], str(whole.choices))
helper = getattr(client.chat.completions, "stream", None) or \
    client.beta.chat.completions.stream
with helper(model=NAME, messages=CHAT, max_tokens=M, temperature=1.0, n=3, seed=21,
            stream_options={"include_usage": True}) as s:
    for _ in s:
        pass
    acc = s.current_completion_snapshot  # (get_final_completion() refuses "length")
d.check("chat n=3 streamed: the SDK's accumulation per index equals the whole answer",
        [(c.index, c.message.content, c.message.role, c.finish_reason)
         for c in acc.choices] ==
        [(c.index, c.message.content, c.message.role, c.finish_reason)
         for c in whole.choices] and acc.usage.completion_tokens ==
        whole.usage.completion_tokens and acc.usage.prompt_tokens ==
        whole.usage.prompt_tokens, f"{acc.choices} {acc.usage} vs {whole.usage}")

# ---- per-choice features ------------------------------------------------------
# a stop string taken from one reference: the choices that contain it stop
STOP = want[1][0][10:18]
ws = refs(11, max_tokens=M, temperature=1.0, stop=[STOP])
r = client.completions.create(model=NAME, prompt=PROMPT, max_tokens=M, temperature=1.0, n=N,
                              seed=11, stop=[STOP])
got = [(c.text, None, c.finish_reason) for c in r.choices]
d.check("stop string: each choice ends as the request alone (some stop, some length)",
        got == [(w[0], None, w[2]) for w in ws] and "stop" in [w[2] for w in ws],
        f"{got} vs {ws}")

SCHEMA = {"type": "object", "properties": {"name": {"type": "string", "maxLength": 8},
                                           "ok": {"type": "boolean"}},
          "required": ["name", "ok"], "additionalProperties": False}
RF = {"type": "json_schema", "json_schema": {"name": "p", "schema": SCHEMA, "strict": True}}
r = client.chat.completions.create(model=NAME, messages=CHAT, max_tokens=200, temperature=1.0,
                                   n=3, seed=3, response_format=RF)
alone = [client.chat.completions.create(model=NAME, messages=CHAT, max_tokens=200,
                                        temperature=1.0, seed=3 + i,
                                        response_format=RF).choices[0].message.content
         for i in range(3)]
try:
    import jsonschema
    valid = all(jsonschema.validate(json.loads(c.message.content), SCHEMA) is None
                for c in r.choices)
except ImportError:
    valid = all(isinstance(json.loads(c.message.content), dict) for c in r.choices)
d.check("response_format json_schema, n=3: every choice validates and equals the request "
        "alone", valid and [c.message.content for c in r.choices] == alone,
        f"{[c.message.content for c in r.choices]} vs {alone}")

r = client.completions.create(model=NAME, prompt="Hello there", max_tokens=6,
                              temperature=1.0, n=3, seed=8, echo=True)
alone = [client.completions.create(model=NAME, prompt="Hello there", max_tokens=6,
                                   temperature=1.0, seed=8 + i, echo=True).choices[0].text
         for i in range(3)]
d.check("echo, n=3: each choice is the prompt and its own sample",
        [c.text for c in r.choices] == alone and all(a.startswith("Hello there")
                                                     for a in alone), str(r.choices))

r = client.completions.create(model=NAME, prompt=["One", "Two two"], max_tokens=5,
                              temperature=1.0, n=2, seed=4)
alone = [client.completions.create(model=NAME, prompt=p, max_tokens=5, temperature=1.0,
                                   seed=4 + i).choices[0].text
         for p in ("One", "Two two") for i in range(2)]
d.check("two prompts, n=2: choices prompt * n + i, each as the request alone",
        [(c.index, c.text) for c in r.choices] == list(enumerate(alone)), str(r.choices))


# ---- the client leaving -------------------------------------------------------
def stream_request(url, body):
    u = url.split("//")[1]
    conn = http.client.HTTPConnection(u.split(":")[0], int(u.split(":")[1]), timeout=30)
    conn.request("POST", "/v1/completions", json.dumps(body),
                 {"Content-Type": "application/json"})
    return conn, conn.getresponse()


cancelled0 = wsum(workers, "dyn_worker_requests_cancelled_total")
conn, resp = stream_request(fe.url, {"model": NAME, "prompt": PROMPT, "max_tokens": 4000,
                                     "n": N, "seed": 1, "stream": True})
seen = set()
for ev in d.sse_events(resp):
    if ev is None:
        break
    seen |= {c["index"] for c in ev["choices"]}
    if len(seen) == N:
        break
running = wsum(workers, "dyn_worker_active_requests")
conn.close()
ok = d.wait_until(lambda: wsum(workers, "dyn_worker_active_requests") == 0, timeout=10)
cancelled = wsum(workers, "dyn_worker_requests_cancelled_total") - cancelled0
d.check(f"client gone: all {N} samples were running, each is cancelled on the worker",
        running == N and ok and cancelled == N and fe.p.poll() is None,
        f"active {running}, cancelled {cancelled}, frontend exit {fe.p.poll()}")


def stream_choices(resp, err):
    """Each chunk's choices of an SSE stream, to its end; an error event's
    body goes to err[0]."""
    for ev in d.sse_events(resp):
        if ev is None:
            return
        if "error" in ev:
            err[0] = ev["error"]
            continue
        yield ev["choices"]


# ---- the worker dying mid-stream ---------------------------------------------
def kill_mid_stream(f, body, after=8):
    """Stream body through frontend f; SIGKILL the worker serving it once every
    index has after chunks.  (per-index texts, finish reasons, an error event)"""
    reqs = {w.id: wmetric(w, "dyn_worker_requests_total") for w in workers}
    conn, resp = stream_request(f.url, body)
    count, texts, fins, err, killed = {}, [""] * N, [None] * N, [None], False
    for choices in stream_choices(resp, err):
        for c in choices:
            count[c["index"]] = count.get(c["index"], 0) + 1
            texts[c["index"]] += c["text"]
            fins[c["index"]] = c["finish_reason"] or fins[c["index"]]
        if not killed and len(count) == N and min(count.values()) >= after:
            busy = [w for w in workers
                    if wmetric(w, "dyn_worker_requests_total") > reqs[w.id]]
            for w in busy:
                w.p.send_signal(signal.SIGKILL)
                w.p.wait()
            killed = len(busy) == 1
    conn.close()
    return texts, fins, err[0], killed


def fe_metric(f, name, **labels):
    return d.metric(d.http_get(f.url + "/metrics")[1], name, **labels) or 0


mig0 = fe_metric(fe, "dyn_frontend_migrations_total")
want_mig = refs(31, max_tokens=LONG, temperature=1.0)
texts, fins, err, killed = kill_mid_stream(fe, {"model": NAME, "prompt": PROMPT,
                                                "max_tokens": LONG, "n": N, "seed": 31,
                                                "temperature": 1.0, "stream": True})
mig = fe_metric(fe, "dyn_frontend_migrations_total") - mig0
d.check("worker killed mid-stream: every sample migrates and the answer is the reference",
        killed and err is None and [(x, None, f) for x, f in zip(texts, fins)] ==
        [(w[0], None, w[2]) for w in want_mig] and mig == N,
        f"killed {killed}, error {err}, migrations {mig}, {texts} vs {want_mig}")



# ---- one sample failing: the call fails, its other samples are cancelled -----
# The worker is stopped (SIGSTOP) mid-stream: with --progress-timeout 1
# the first sample found silent fails the request (--migration-limit 0);
# once let run again, the worker finds every sample cancelled.
workers = [w for w in workers if w.p.poll() is None]
fe0 = d.frontend(["--migration-limit", "0", "--progress-timeout", "1",
                  "--health-check-interval", "0"])
ok = d.wait_until(lambda: [m["dyn"]["pools"]["agg"] for m in json.loads(
    d.http_get(fe0.url + "/v1/models")[1])["data"] if m["id"] == NAME] == [1], timeout=30)
d.check("the killed worker's record goes", ok)
w = workers[0]
cancelled0 = wmetric(w, "dyn_worker_requests_cancelled_total")
conn, resp = stream_request(fe0.url, {"model": NAME, "prompt": PROMPT, "max_tokens": 4000,
                                      "n": N, "seed": 1, "stream": True})
seen, err, stopped = set(), [None], False
for choices in stream_choices(resp, err):
    seen |= {c["index"] for c in choices}
    if len(seen) == N and not stopped:
        active = wmetric(w, "dyn_worker_active_requests")
        w.p.send_signal(signal.SIGSTOP)
        stopped = True
conn.close()
err = err[0]
w.p.send_signal(signal.SIGCONT)
ok = d.wait_until(lambda: wmetric(w, "dyn_worker_active_requests") == 0, timeout=10)
cancelled = wmetric(w, "dyn_worker_requests_cancelled_total") - cancelled0
d.check("a sample failing (stalled, no migration) fails the stream with an error event",
        stopped and err is not None and "progress" in err.get("message", ""), str(err))
d.check(f"... and cancels the {N} samples on the worker, running till then",
        active == N and ok and cancelled == N and fe0.p.poll() is None,
        f"active {active}, cancelled {cancelled}, frontend exit {fe0.p.poll()}")
r = fe_metric(fe0, "dyn_frontend_migration_failures_total", reason="limit")
d.check("the failure is counted once for the request", r == 1, str(r))
# (the worker's lease may have lapsed while it was stopped: it registers again)
res = [None]


def serves():
    res[0] = d.post_json(fe0.url + "/v1/completions", {"model": NAME, "prompt": "x", "n": 2,
                                                        "max_tokens": 3})
    return res[0][0] == 200 and len(res[0][1]["choices"]) == 2


d.check("the frontend and the worker serve on afterwards", d.wait_until(serves, timeout=20),
        str(res[0]))

# ---- wall time and tool calls per choice on a delayed echo worker -------------
ECHO_TOKENS = 25
ew = d.Proc(["serve", "--model", QWEN, "--served-model-name", "echo", "--engine", "echo",
             "--system-port", "0"], r"instance ([0-9a-f]{16}) .* system port (\d+)",
            env={"DYN_TOKEN_ECHO_DELAY_MS": "20"})
ok = d.wait_until(lambda: "echo" in [m.id for m in client.models.list().data])
d.check("an echo worker with 20 ms per token registers", ok)
EP = " ".join(["tok"] * 60)


def timed(n):
    t0 = time.monotonic()
    r = client.completions.create(model="echo", prompt=EP, max_tokens=ECHO_TOKENS, n=n)
    return time.monotonic() - t0, r


t1, _ = timed(1)
t4, r = timed(N)
# against n=1 measured just before (a loaded machine slows both): one
# after the other would take N times as long
d.check(f"echo, 20 ms/token: n=4 takes about one sample's time ({t4:.2f} s vs {t1:.2f} s for "
        f"n=1; one after the other >= {N * ECHO_TOKENS * 0.02:.1f} s)",
        t4 < 2.5 * t1 and len(r.choices) == N, f"{t4} vs {t1}")

fet = d.frontend(["--tool-call-parser", "hermes"])
ct = openai.OpenAI(base_url=fet.url + "/v1", api_key="unused", max_retries=0, timeout=60)
d.wait_until(lambda: "echo" in [m.id for m in ct.models.list().data])
TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]
CALL = ("Checking.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": "
        "{\"city\": \"Bern\"}}\n</tool_call>")
msgs = [{"role": "system", "content": ""}, {"role": "user", "content": CALL}]
r = ct.chat.completions.create(model="echo", messages=msgs, tools=TOOLS, n=3)
calls = [[(c.function.name, json.loads(c.function.arguments))
          for c in ch.message.tool_calls or []] for ch in r.choices]
one = ct.chat.completions.create(model="echo", messages=msgs, tools=TOOLS).choices[0]
d.check("tool calls parsed per choice, n=3: each as the request alone",
        one.message.tool_calls and [ch.finish_reason for ch in r.choices] == [one.finish_reason] * 3 and
        calls == [[(c.function.name, json.loads(c.function.arguments))
                   for c in one.message.tool_calls or []]] * 3 and
        [ch.message.content for ch in r.choices] == [one.message.content] * 3,
        f"{r.choices} vs {one}")
with ct.chat.completions.stream(model="echo", messages=msgs, tools=TOOLS, n=3) as s:
    for _ in s:
        pass
    acc = s.get_final_completion()
d.check("tool calls streamed, n=3: the SDK's accumulation per index equals the whole answer",
        [[(c.function.name, c.function.arguments) for c in ch.message.tool_calls or []]
         for ch in acc.choices] ==
        [[(c.function.name, c.function.arguments) for c in ch.message.tool_calls or []]
         for ch in r.choices] and [ch.finish_reason for ch in acc.choices] ==
        [ch.finish_reason for ch in r.choices], f"{acc.choices}")

d.finish()
