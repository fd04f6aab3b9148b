"""serve_mock - `dyn serve --engine mock` behind `dyn frontend --router-mode
round-robin`, on qwen3-0.6b-shape (config and tokenizer, no weights).

References are independent of dyn: prompt token counts come from Hugging
Face `tokenizers` on the same tokenizer.json (chat prompts rendered with
jinja2 from the model's own chat template); the requests go through the
official OpenAI SDK; expected durations come from the mocker polynomials
of DESIGN.md section 1, evaluated here in Python; prefix-cache hits are
worked out from the block size.

Checked: chat and completions run to exactly max_tokens with the right
prompt token counts; a repeated long prompt is served from the worker's
prefix cache (usage.prompt_tokens_details.cached_tokens in the worker's
own response, and its /metrics); a large --speedup-ratio makes requests
fast, and at ratio 1 a request's duration is within 0.7x..2x of the
model's prediction (median of 3); a client that disconnects frees its KV
blocks; 64 mock workers start, all register, serve one request each, and
stay nearly idle (RSS and CPU printed as INFO lines).
"""
import concurrent.futures
import json
import math
import os
import random
import re
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "pylib"))
import dynproc as d  # noqa: E402

import jinja2  # noqa: E402
import openai  # noqa: E402
from tokenizers import Tokenizer  # noqa: E402

SHAPE = os.path.abspath(os.path.join(d.TOP, "..", "shared", "models", "qwen3-0.6b-shape"))
NAME = "qwen3-0.6b-shape"
BLOCK, BLOCKS = 64, 16384          # the mock engine's defaults
N_MANY = int(os.environ.get("DYN_TEST_MOCK_WORKERS", "64"))

hf = Tokenizer.from_file(os.path.join(SHAPE, "tokenizer.json"))
with open(os.path.join(SHAPE, "tokenizer_config.json")) as f:
    template = jinja2.Environment().from_string(json.load(f)["chat_template"])


def prefill_ms(t):
    return 4.209989e-7 * t * t + 1.518344e-2 * t + 16.50142


def decode_ms(u):
    return max(1.0, -25.74 * u * u + 54.01 * u + 5.74)


def predicted_ms(n_prompt, n_out):
    """One request alone on a worker: a prefill step that yields the first
    token, then a decode step per further token."""
    ms = prefill_ms(n_prompt)
    for k in range(1, n_out):
        ms += decode_ms(math.ceil((n_prompt + k + 1) / BLOCK) / BLOCKS)
    return ms


def mock_worker(name, ratio):
    w = d.Proc(["serve", "--model", SHAPE, "--engine", "mock", "--served-model-name", name,
                "--speedup-ratio", str(ratio), "--system-port", "0", "--lease-ttl", "2000"],
               r"instance ([0-9a-f]{16}) .* system port (\d+)")
    w.id, w.sys_port = w.m.group(1), int(w.m.group(2))
    return w


def words(n, seed):
    rng = random.Random(seed)
    pool = ["river", "stone", "lamp", "cloud", "garden", "silver", "quiet", "engine",
            "window", "harbor", "maple", "signal", "paper", "orbit", "candle", "meadow"]
    return " ".join(rng.choice(pool) for _ in range(n))


def metrics(w):
    return d.http_get(f"http://127.0.0.1:{w.sys_port}/metrics")[1]


def wm(w, name):
    return d.metric(metrics(w), name)


def routable(name):
    return d.metric(d.http_get(fe.url + "/metrics")[1], "dyn_frontend_workers", model=name)


fast = [mock_worker(NAME, 1000) for _ in range(2)]
slow = mock_worker("mock-slow", 1)
fe = d.frontend(["--router-mode", "round-robin"])
client = openai.OpenAI(base_url=fe.url + "/v1", api_key="unused", max_retries=0, timeout=60)

ok = d.wait_until(lambda: routable(NAME) == 2 and routable("mock-slow") == 1, timeout=20)
d.check("mock workers register their model cards", ok, fe.stderr())
if not ok:
    d.finish()

# ---- exact lengths and prompt token counts ---------------------------------
prompt = "The mock engine schedules like the real one but never computes."
want_prompt = len(hf.encode(prompt, add_special_tokens=True).ids)
for max_tokens in (1, 7, 64):
    r = client.completions.create(model=NAME, prompt=prompt, max_tokens=max_tokens)
    d.check(f"completion runs to max_tokens={max_tokens}",
            r.usage.completion_tokens == max_tokens and r.choices[0].finish_reason == "length",
            f"{r.usage} {r.choices[0].finish_reason}")
    d.check(f"completion prompt tokens (max_tokens={max_tokens})",
            r.usage.prompt_tokens == want_prompt, f"{r.usage.prompt_tokens} != {want_prompt}")

messages = [{"role": "system", "content": "You are terse."},
            {"role": "user", "content": "Name three rivers in Europe."}]
rendered = template.render(messages=messages, add_generation_prompt=True)
want_chat = len(hf.encode(rendered, add_special_tokens=False).ids)
r = client.chat.completions.create(model=NAME, messages=messages, max_tokens=33)
d.check("chat runs to max_tokens", r.usage.completion_tokens == 33 and
        r.choices[0].finish_reason == "length", f"{r.usage}")
d.check("chat prompt tokens match the template + tokenizer reference",
        r.usage.prompt_tokens == want_chat, f"{r.usage.prompt_tokens} != {want_chat}")

n_chunks, usage = 0, None
for ch in client.chat.completions.create(model=NAME, messages=messages, max_tokens=20,
                                         stream=True, stream_options={"include_usage": True}):
    if ch.usage:
        usage = ch.usage
    if ch.choices and ch.choices[0].delta.content is not None:
        n_chunks += 1
d.check("streamed chat runs to max_tokens", usage is not None and
        usage.completion_tokens == 20 and usage.prompt_tokens == want_chat, f"{usage}")

# ---- prefix cache -----------------------------------------------------------
long_prompt = words(1500, 1)
ids = hf.encode(long_prompt, add_special_tokens=True).ids
body = json.dumps({"token_ids": ids, "stop": {"max_tokens": 2}})


def rpc_usage(w):
    out = subprocess.run([d.DYN, "rpc", "call", "--store", d.store, "--instance", w.id,
                          "--timeout", "20", "dyn/backend/generate", body],
                         capture_output=True, text=True, timeout=30)
    usage = None
    for line in out.stdout.splitlines():
        m = re.search(r"\{.*\}", line)
        if m:
            try:
                usage = json.loads(m.group(0)).get("usage", usage)
            except ValueError:
                pass
    return usage, out


hits0 = wm(fast[0], "dyn_worker_prefix_cache_hit_tokens_total")
u1, out1 = rpc_usage(fast[0])
u2, out2 = rpc_usage(fast[0])
want_cached = (len(ids) - 1) // BLOCK * BLOCK
d.check("first long prompt: nothing cached", u1 is not None and
        u1.get("prompt_tokens_details", {}).get("cached_tokens") == 0,
        f"{u1} {out1.stdout[-500:]} {out1.stderr[-500:]}")
d.check("repeated long prompt: its full blocks come from the prefix cache",
        u2 is not None and u2.get("prompt_tokens") == len(ids) and
        u2.get("prompt_tokens_details", {}).get("cached_tokens") == want_cached,
        f"{u2}, want {want_cached} of {len(ids)}")
hits = wm(fast[0], "dyn_worker_prefix_cache_hit_tokens_total") - hits0
d.check("worker /metrics counts the cache hit", hits == want_cached, f"{hits} != {want_cached}")
text = metrics(fast[0])
d.check("worker /metrics shows the mock engine's state",
        d.metric(text, "dyn_worker_kv_blocks_capacity", engine="mock") == BLOCKS and
        d.metric(text, "dyn_worker_queued_prefill_tokens") == 0 and
        d.metric(text, "dyn_worker_kv_blocks_cached") >= want_cached // BLOCK, text[-1500:])
d.promtool_check("promtool check metrics (mock worker)", text)

# ---- timing -----------------------------------------------------------------
N_OUT = 47  # with a ~1000-token prompt: about 300 ms at ratio 1


def timed(model, seed):
    p = words(900, seed)  # fresh words: no prefix-cache hit
    t0 = time.monotonic()
    r = client.completions.create(model=model, prompt=p, max_tokens=N_OUT)
    took = (time.monotonic() - t0) * 1000
    return took, predicted_ms(r.usage.prompt_tokens, r.usage.completion_tokens), r


runs = [timed("mock-slow", 100 + i) for i in range(3)]
took = statistics.median(x[0] for x in runs)
pred = statistics.median(x[1] for x in runs)
print(f"INFO: serve_mock: ratio 1: median {took:.0f} ms, "
      f"predicted {pred:.0f} ms", flush=True)
d.check("ratio 1: duration within 0.7x..2x of the timing model",
        0.7 * pred <= took <= 2.0 * pred, f"median {took:.0f} ms, predicted {pred:.0f} ms")
runs = [timed(NAME, 200 + i) for i in range(3)]
took_fast = statistics.median(x[0] for x in runs)
print(f"INFO: serve_mock: ratio 1000: median {took_fast:.0f} ms", flush=True)
d.check("ratio 1000: the same request is fast", took_fast < 0.5 * pred,
        f"median {took_fast:.0f} ms vs {pred:.0f} ms predicted at ratio 1")

# ---- a disconnecting client frees its blocks --------------------------------
cancelled0 = wm(slow, "dyn_worker_requests_cancelled_total") or 0
stream = client.completions.create(model="mock-slow", prompt=words(300, 7), max_tokens=5000,
                                   stream=True)
got = 0
for ch in stream:
    got += 1
    if got >= 5:
        break
used_during = wm(slow, "dyn_worker_kv_blocks_used")
stream.close()
ok = d.wait_until(lambda: wm(slow, "dyn_worker_kv_blocks_used") == 0 and
                  wm(slow, "dyn_worker_running_requests") == 0, timeout=10)
d.check("disconnect: the worker cancels the request and frees its KV blocks",
        used_during and used_during > 0 and ok and
        wm(slow, "dyn_worker_requests_cancelled_total") == cancelled0 + 1,
        f"used during {used_during}, now {wm(slow, 'dyn_worker_kv_blocks_used')}")

for w in fast + [slow]:
    w.stop()
fe.stop()

# ---- many mock workers ------------------------------------------------------
# On an SQLite store in the test's folder: every process that holds a lease
# reaps expired leases every 250 ms, and the file store does it by reading
# every lease file, so 64 idle workers on it spend ~15% of a core on the
# store alone (O(workers^2)); SQLite answers the same with one query.
# Started 8 at a time, with a long lease TTL: each publishes its card with
# the 11 MB tokenizer.json, and a worker waiting for the store during a
# burst of starts must not lose its lease meanwhile.
many_store = "sqlite://" + os.path.join(d.tmp, "many.db")
env = dict(os.environ, DYN_STORE=many_store, DYN_LOG="warn")
fe2 = d.Proc(["frontend", "--http-port", "0", "--http-host", "127.0.0.1", "--router-mode",
              "round-robin"], r"listening on http://[^:]+:(\d+)", env={"DYN_STORE": many_store})
fe2.url = f"http://127.0.0.1:{fe2.m.group(1)}"
client2 = openai.OpenAI(base_url=fe2.url + "/v1", api_key="unused", max_retries=0, timeout=60)
t0 = time.monotonic()


class Many(d.Proc):  # a process started here; finish() stops it like the others
    def __init__(self, i):
        self.log = open(os.path.join(d.tmp, f"many{i}.log"), "w+")
        self.p = subprocess.Popen([d.DYN, "serve", "--model", SHAPE, "--engine", "mock",
                                   "--served-model-name", "mock-many", "--speedup-ratio",
                                   "1000", "--system-port", "0", "--lease-ttl", "30000"],
                                  stdout=subprocess.PIPE, stderr=self.log, env=env, text=True)
        d.procs.append(self)


started = []
for first in range(0, N_MANY, 8):
    batch = [Many(i) for i in range(first, min(first + 8, N_MANY))]
    for w in batch:
        line = w.p.stdout.readline()
        m = re.search(r"instance ([0-9a-f]{16}) .* system port (\d+)", line)
        if m:
            w.id, w.sys_port = m.group(1), int(m.group(2))
            started.append(w)
        else:
            print(f"INFO: serve_mock: a worker did not start: {w.stderr()}", flush=True)
t_start = time.monotonic() - t0
d.check(f"{N_MANY} mock workers start", len(started) == N_MANY,
        f"{len(started)} started")
print(f"INFO: serve_mock: {len(started)} workers started in {t_start:.1f} s", flush=True)



def routable2(name):
    return d.metric(d.http_get(fe2.url + "/metrics")[1], "dyn_frontend_workers", model=name)


ok = d.wait_until(lambda: routable2("mock-many") == N_MANY, timeout=60)
ls = subprocess.run([d.DYN, "rpc", "ls", "--store", many_store, "--json",
                     "dyn/backend/generate"],
                    capture_output=True, text=True, timeout=30).stdout
n_ls = sum(1 for line in ls.splitlines() if '"mock-many"' in line)
d.check(f"all {N_MANY} register (frontend and dyn rpc ls)", ok and n_ls == N_MANY,
        f"frontend sees {routable2('mock-many')}, rpc ls {n_ls}")


def one(i):
    r = client2.completions.create(model="mock-many", prompt=f"request {i}: " + words(20, i),
                                  max_tokens=8)
    return r.usage.completion_tokens


with concurrent.futures.ThreadPoolExecutor(8) as ex:
    outs = list(ex.map(one, range(N_MANY)))
per = [wm(w, "dyn_worker_requests_total") for w in started]
d.check(f"round-robin: each of the {N_MANY} workers serves one request",
        outs == [8] * N_MANY and per == [1] * len(started), f"{outs} {per}")


def cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))


time.sleep(0.5)
hz = os.sysconf("SC_CLK_TCK")
a = [cpu_ticks(w.p.pid) for w in started]
t0 = time.monotonic()
time.sleep(2.0)
b = [cpu_ticks(w.p.pid) for w in started]
span = time.monotonic() - t0
cpu = sum(y - x for x, y in zip(a, b)) / hz / span  # cores, all workers together
rss = [rss_kb(w.p.pid) for w in started]
print(f"INFO: serve_mock: {len(started)} idle workers: CPU {cpu * 100:.2f}% of one core "
      f"in all ({cpu * 100 / len(started):.3f}% each) over {span:.1f} s; RSS mean "
      f"{statistics.mean(rss) / 1024:.1f} MiB, max {max(rss) / 1024:.1f} MiB", flush=True)
d.check("idle mock workers cost almost no CPU (< 10% of one core for all)", cpu < 0.10,
        f"{cpu * 100:.1f}%")
if os.environ.get("SAN") == "1":  # AddressSanitizer's shadow memory is in the RSS
    d.skip("mock workers stay small (RSS < 40 MiB each)", "sanitizer build")
else:
    d.check("mock workers stay small (RSS < 40 MiB each)", max(rss) < 40 * 1024,
            f"max {max(rss)} kB")
# A model without weights under --engine auto: the echo engine, said loudly.
w = d.Proc(["serve", "--model", SHAPE, "--system-port", "0"], r"instance ([0-9a-f]{16})")
err = w.stderr()
d.check("--engine auto without weights: echo, with a warning saying so",
        "(engine echo)" in w.line and "has no weights" in err and "echo engine" in err,
        w.line + err)
w.stop()
d.finish()
