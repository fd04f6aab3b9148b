"""frontend_builtin - stories260K on the builtin engine behind the frontend,
through the official OpenAI Python SDK.

The reference is the model's published greedy output
(../shared/models/stories260K/expected_greedy_from_bos.txt: 200 tokens
after BOS, the same count test/unit/test_engine.c uses), never dyn's own
output.  Also: streaming gives the same text, seeds reproduce, logprobs
are consistent, a client that disconnects mid-stream frees the engine's
KV blocks (the worker's /metrics), list prompts, and `dyn run --http`.
"""
import concurrent.futures
import http.client
import subprocess
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "pylib"))
import dynproc as d  # noqa: E402

import openai  # noqa: E402

NAME = "stories260K"
GREEDY_TOKENS = 200
with open(os.path.join(d.MODEL, "expected_greedy_from_bos.txt")) as fh:
    WANT = fh.read()

w = d.worker(["--threads", "1"], engine="auto")  # auto: stories260K has weights
fe = d.frontend()
client = openai.OpenAI(base_url=fe.url + "/v1", api_key="unused", max_retries=0, timeout=30)
ok = d.wait_until(lambda: [m.id for m in client.models.list().data] == [NAME])
d.check("builtin worker registers its model", ok, fe.stderr() + w.stderr())
if not ok:
    d.finish()
d.check("worker says its engine is builtin", "(engine builtin)" in w.line, w.line)

r = client.completions.create(model=NAME, prompt="", max_tokens=GREEDY_TOKENS, temperature=0)
d.check("greedy completion from BOS is the reference text", r.choices[0].text == WANT,
        f"{r.choices[0].text!r}")
d.check("greedy completion usage and finish",
        r.usage.prompt_tokens == 1 and r.usage.completion_tokens == GREEDY_TOKENS and
        r.choices[0].finish_reason == "length", f"{r.usage} {r.choices[0].finish_reason}")

chunks = list(client.completions.create(model=NAME, prompt="", max_tokens=GREEDY_TOKENS,
                                        temperature=0, stream=True,
                                        stream_options={"include_usage": True}))
text = "".join(c.choices[0].text for c in chunks if c.choices)
d.check("streamed greedy completion is the reference text", text == WANT, f"{text!r}")
d.check("streamed usage", chunks[-1].usage is not None and
        chunks[-1].usage.completion_tokens == GREEDY_TOKENS)


def greedy(stream):
    if not stream:
        return client.completions.create(model=NAME, prompt="", max_tokens=GREEDY_TOKENS,
                                         temperature=0).choices[0].text
    return "".join(c.choices[0].text for c in client.completions.create(
        model=NAME, prompt="", max_tokens=GREEDY_TOKENS, temperature=0, stream=True)
        if c.choices)


with concurrent.futures.ThreadPoolExecutor(8) as ex:
    texts = list(ex.map(greedy, [i % 2 == 0 for i in range(8)]))
d.check("8 concurrent greedy requests (batched in the engine) all give the reference text",
        all(t == WANT for t in texts), str([t[:30] for t in texts if t != WANT]))


def sample(seed):
    return client.completions.create(model=NAME, prompt="Once upon a time", max_tokens=60,
                                     temperature=1.0, seed=seed).choices[0].text


a, b, c = sample(1234), sample(1234), sample(98765)
d.check("same seed, same text (temperature 1)", a == b, f"{a!r} != {b!r}")
d.check("different seed, different text", a != c, f"{a!r}")

r = client.completions.create(model=NAME, prompt="", max_tokens=20, temperature=0, logprobs=3)
lp = r.choices[0].logprobs
ok = (lp is not None and len(lp.tokens) == 20 and len(lp.token_logprobs) == 20 and
      all(len(t) == 3 for t in lp.top_logprobs) and
      all(x <= 0 for x in lp.token_logprobs) and
      # greedy: the chosen token is the most likely one
      all(abs(x - max(t.values())) < 1e-4 for x, t in zip(lp.token_logprobs, lp.top_logprobs)) and
      "".join(lp.tokens) == r.choices[0].text == WANT[:len(r.choices[0].text)])
d.check("completion logprobs: 3 alternatives, greedy picks the top one", ok, str(lp)[:600])

r = client.chat.completions.create(model=NAME, messages=[{"role": "user", "content": "Lily"}],
                                   max_tokens=10, logprobs=True, top_logprobs=2)
c0 = r.choices[0]
d.check("chat logprobs", c0.logprobs is not None and len(c0.logprobs.content) ==
        r.usage.completion_tokens and all(len(x.top_logprobs) == 2 and x.logprob <= 0
                                         for x in c0.logprobs.content), str(c0.logprobs)[:400])

# Every logprob entry holds exactly its token's share of the text: the
# bytes join to the content (Python's UTF-8 encoding of it), the first
# token after BOS included.
SPECIAL_TEXT = {"<s>", "</s>", "<unk>"}
for stream in (False, True):
    kw = dict(model=NAME, messages=[{"role": "user", "content": "Lily"}], max_tokens=80,
              temperature=0, logprobs=True, top_logprobs=1)
    if stream:
        chunks = list(client.chat.completions.create(stream=True, **kw))
        content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        ents = [e for c in chunks if c.choices and c.choices[0].logprobs
                for e in c.choices[0].logprobs.content]
    else:
        r = client.chat.completions.create(**kw)
        content, ents = r.choices[0].message.content, r.choices[0].logprobs.content
    joined = b"".join(bytes(e.bytes) for e in ents if e.token not in SPECIAL_TEXT)
    d.check(f"chat logprob bytes join to the content (stream={stream})",
            len(content) > 0 and joined == content.encode(), f"{content!r} vs {joined!r}")
r = client.completions.create(model=NAME, prompt="", max_tokens=40, temperature=0, logprobs=1)
lp, t = r.choices[0].logprobs, r.choices[0].text
d.check("completion text_offset: each token at its place in the text",
        t == WANT[:len(t)] and all(t[o:o + len(tok)] == tok
                                   for tok, o in zip(lp.tokens, lp.text_offset)),
        str(list(zip(lp.tokens, lp.text_offset))[:10]))

r = client.completions.create(model=NAME, prompt=["", "Once upon a time"], max_tokens=GREEDY_TOKENS,
                              temperature=0)
d.check("a list of prompts gives one choice each", len(r.choices) == 2 and
        sorted(x.index for x in r.choices) == [0, 1] and
        [x for x in r.choices if x.index == 0][0].text == WANT,
        str([x.text[:40] for x in r.choices]))
one = client.completions.create(model=NAME, prompt="Once upon a time", max_tokens=GREEDY_TOKENS,
                                temperature=0)
d.check("a list of prompts: each choice as if asked alone",
        [x for x in r.choices if x.index == 1][0].text == one.choices[0].text)
d.check("a list of prompts sums usage",
        r.usage.prompt_tokens == 1 + one.usage.prompt_tokens and
        r.usage.completion_tokens == GREEDY_TOKENS + one.usage.completion_tokens and
        r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens, str(r.usage))


def wmetrics():
    return d.http_get(f"http://127.0.0.1:{w.sys_port}/metrics")[1]


# A client that goes away mid-stream: the worker's engine request is
# cancelled and its KV blocks go back to the pool.
before = d.metric(wmetrics(), "dyn_worker_requests_cancelled_total")
conn = http.client.HTTPConnection("127.0.0.1", fe.port, timeout=10)
conn.request("POST", "/v1/completions", json.dumps(
    {"model": NAME, "prompt": "", "max_tokens": 500, "ignore_eos": True, "stream": True}),
    {"Content-Type": "application/json"})
resp = conn.getresponse()
first = resp.read(6)
conn.sock.close()
conn.close()
d.check("stream started", first.startswith(b"data: "), repr(first))
ok = d.wait_until(lambda: d.metric(wmetrics(), "dyn_worker_requests_cancelled_total") == before + 1
                  and d.metric(wmetrics(), "dyn_worker_active_requests") == 0
                  and d.metric(wmetrics(), "dyn_worker_kv_blocks_used") == 0, timeout=10)
m = wmetrics()
d.check("a disconnect cancels the engine request and frees its KV blocks", ok,
        "\n".join(x for x in m.splitlines() if "kv_blocks" in x or "cancel" in x or "active" in x))
d.check("worker KV capacity is the engine's", (d.metric(m, "dyn_worker_kv_blocks_capacity") or 0) > 0)
d.promtool_check("promtool check metrics (builtin worker)", m)

# dyn run MODEL --http: frontend and engine in one process.
run = d.Proc(["run", d.MODEL, "--http", "--http-port", "0", "--http-host", "127.0.0.1",
              "--threads", "1"], r"listening on http://[^:]+:(\d+)")
rc = openai.OpenAI(base_url=f"http://127.0.0.1:{run.m.group(1)}/v1", api_key="unused",
                   max_retries=0, timeout=30)
ok = d.wait_until(lambda: [m.id for m in rc.models.list().data] == [NAME])
d.check("dyn run --http lists its model", ok, run.stderr())
if ok:
    r = rc.chat.completions.create(model=NAME, messages=[{"role": "user", "content": "Once"}],
                                   max_tokens=30, temperature=0)
    d.check("dyn run --http answers a chat request",
            r.choices[0].message.role == "assistant" and len(r.choices[0].message.content) > 0
            and r.usage.completion_tokens > 0, str(r))
    r = rc.completions.create(model=NAME, prompt="", max_tokens=GREEDY_TOKENS, temperature=0)
    d.check("dyn run --http greedy completion is the reference text", r.choices[0].text == WANT)
d.check("dyn run --http stops on SIGTERM", run.stop() == 0, run.stderr())

# --api-key and --served-model-name, as dyn serve and dyn frontend take them.
run = d.Proc(["run", d.MODEL, "--http", "--http-port", "0", "--http-host", "127.0.0.1",
              "--threads", "1", "--api-key", "k3y", "--served-model-name", "tiny/story"],
             r"listening on http://[^:]+:(\d+)")
base = f"http://127.0.0.1:{run.m.group(1)}/v1"
keyed = openai.OpenAI(base_url=base, api_key="k3y", max_retries=0, timeout=30)
ok = d.wait_until(lambda: [m.id for m in keyed.models.list().data] == ["tiny/story"])
d.check("dyn run --http --served-model-name: the API names the model so", ok, run.stderr())
try:
    openai.OpenAI(base_url=base, api_key="wrong", max_retries=0, timeout=30).models.list()
    d.check("dyn run --http --api-key: a wrong key is a 401", False, "accepted")
except openai.AuthenticationError:
    d.check("dyn run --http --api-key: a wrong key is a 401", True)
if ok:
    r = keyed.completions.create(model="tiny/story", prompt="", max_tokens=GREEDY_TOKENS,
                                 temperature=0)
    d.check("dyn run --http --api-key: the right key gets the reference text",
            r.choices[0].text == WANT)
run.stop()
p = subprocess.run([d.DYN, "run", d.MODEL, "--api-key", "k", "--prompt", "x"],
                   capture_output=True, text=True, timeout=30)
d.check("--api-key without --http: a usage error", p.returncode == 2 and "--http" in p.stderr,
        p.stderr)
d.finish()
