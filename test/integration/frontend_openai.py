"""frontend_openai - the frontend through the official OpenAI Python SDK.

Workers run the echo engine, so the text that comes back is known: the
prompt's own tokens, detokenized after the prompt.  The expected text is
computed with Hugging Face `tokenizers` (the reference implementation)
from the model's tokenizer.json, never with dyn's own tokenizer.
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "pylib"))
import dynproc as d  # noqa: E402

import openai  # noqa: E402
from tokenizers import Tokenizer  # noqa: E402

NAME = "stories260K"
hf = Tokenizer.from_file(os.path.join(d.MODEL, "tokenizer.json"))


def echo_text(ids):
    """What an echo worker's answer detokenizes to, after the prompt ids."""
    full = hf.decode(ids + ids, skip_special_tokens=True)
    head = hf.decode(ids, skip_special_tokens=True)
    assert full.startswith(head)
    return full[len(head):]


def completion_ids(prompt):
    return hf.encode(prompt, add_special_tokens=True).ids


def chat_ids(content):
    # stories260K's template: bos_token + the user's content.
    return hf.encode("<s>" + content, add_special_tokens=False).ids


w1 = d.worker(ttl=1500)
w2 = d.worker(ttl=1500)
fe = d.frontend(["--max-body-bytes", "200000"])
client = openai.OpenAI(base_url=fe.url + "/v1", api_key="unused", max_retries=0, timeout=30)

ok = d.wait_until(lambda: [m.id for m in client.models.list().data] == [NAME])
d.check("model listed once its workers register", ok)
if not ok:
    print(fe.stderr(), file=sys.stderr)
    d.finish()
d.check("models.retrieve", client.models.retrieve(NAME).id == NAME)

prompt = "Once upon a time there was a little girl named Lily"
ids = completion_ids(prompt)
want = echo_text(ids)

r = client.completions.create(model=NAME, prompt=prompt)
d.check("completion text", r.choices[0].text == want, f"{r.choices[0].text!r} != {want!r}")
d.check("completion usage", r.usage.prompt_tokens == len(ids) and
        r.usage.completion_tokens == len(ids) and r.usage.total_tokens == 2 * len(ids),
        str(r.usage))
d.check("completion object", r.object == "text_completion" and r.model == NAME and
        r.id.startswith("cmpl-") and r.created > 0 and r.choices[0].finish_reason == "stop")

chunks = list(client.completions.create(model=NAME, prompt=prompt, stream=True,
                                        stream_options={"include_usage": True}))
text = "".join(c.choices[0].text for c in chunks if c.choices)
d.check("streamed completion text", text == want, f"{text!r}")
d.check("streamed completion: finish_reason last, then usage",
        chunks[-2].choices[0].finish_reason == "stop" and chunks[-1].choices == [] and
        chunks[-1].usage.completion_tokens == len(ids))

r = client.completions.create(model=NAME, prompt=ids)
d.check("completion from token ids", r.choices[0].text == want)
r = client.completions.create(model=NAME, prompt=[prompt])
d.check("completion from a list of one string", r.choices[0].text == want)
r = client.completions.create(model=NAME, prompt=prompt, echo=True, max_tokens=0)
d.check("echo with max_tokens 0 returns the prompt", r.choices[0].text == prompt,
        repr(r.choices[0].text))

r = client.completions.create(model=NAME, prompt=prompt, max_tokens=3)
d.check("max_tokens: length", r.choices[0].finish_reason == "length" and
        r.usage.completion_tokens == 3 and r.choices[0].text == echo_text(ids)[:len(
            hf.decode(ids + ids[:3], skip_special_tokens=True)) - len(
            hf.decode(ids, skip_special_tokens=True))])

# Stop strings, including ones spanning several tokens.
for stop in ["little", "e a li", "girl named", "Lily", " Once up"]:
    cut = want.split(stop)[0]
    r = client.completions.create(model=NAME, prompt=prompt, stop=[stop, "zzzz"])
    got = r.choices[0].text
    s = "".join(c.choices[0].text for c in client.completions.create(
        model=NAME, prompt=prompt, stop=stop, stream=True) if c.choices)
    d.check(f"stop {stop!r}", got == cut and s == cut and r.choices[0].finish_reason == "stop",
            f"{got!r} / {s!r} != {cut!r}")
r = client.completions.create(model=NAME, prompt=prompt, stop=["not in the text"])
d.check("stop string never matched", r.choices[0].text == want)

# Chat.
msg = "Hello there, Tim the happy dog"
cids = chat_ids(msg)
cwant = echo_text(cids)
r = client.chat.completions.create(model=NAME, messages=[{"role": "user", "content": msg}])
d.check("chat text", r.choices[0].message.content == cwant and
        r.choices[0].message.role == "assistant", f"{r.choices[0].message.content!r}")
d.check("chat usage", r.usage.prompt_tokens == len(cids) and
        r.usage.completion_tokens == len(cids), str(r.usage))
d.check("chat object", r.object == "chat.completion" and r.id.startswith("chatcmpl-") and
        r.system_fingerprint)
chunks = list(client.chat.completions.create(
    model=NAME, messages=[{"role": "user", "content": [{"type": "text", "text": msg}]}],
    stream=True, stream_options={"include_usage": True}))
text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
d.check("streamed chat with content parts", text == cwant, repr(text))
d.check("streamed chat: role first, finish_reason, usage",
        chunks[0].choices[0].delta.role == "assistant" and
        chunks[-2].choices[0].finish_reason == "stop" and chunks[-1].usage.total_tokens ==
        2 * len(cids))
r = client.chat.completions.create(model=NAME, messages=[{"role": "user", "content": msg}],
                                   stop="happy", max_completion_tokens=100, seed=7,
                                   temperature=0.7, top_p=0.9, user="u", n=1,
                                   extra_body={"top_k": 5, "min_p": 0.1, "ignore_eos": True,
                                               "repetition_penalty": 1.1, "min_tokens": 1,
                                               "chat_template_kwargs": {"x": 1}})
d.check("chat stop + every sampling field accepted",
        r.choices[0].message.content == cwant.split("happy")[0])
a = [client.chat.completions.create(model=NAME, messages=[{"role": "user", "content": msg}],
                                    seed=42, temperature=1.0).choices[0].message.content
     for _ in range(2)]
d.check("same seed, same text", a[0] == a[1])

r = client.chat.completions.create(model=NAME, messages=[{"role": "user", "content": msg}],
                                   logprobs=True, top_logprobs=1)
lp = r.choices[0].logprobs.content
d.check("chat logprobs", len(lp) == len(cids) and all(e.logprob == 0 for e in lp) and
        len(lp[1].top_logprobs) == 1 and lp[1].top_logprobs[0].token == lp[1].token)
r = client.completions.create(model=NAME, prompt=prompt, logprobs=1)
lp = r.choices[0].logprobs
d.check("completion logprobs", len(lp.tokens) == len(ids) and len(lp.token_logprobs) ==
        len(ids) and len(lp.top_logprobs) == len(ids) and len(lp.text_offset) == len(ids))

# Errors arrive as the SDK's exception classes.
def raises(cls, fn):
    try:
        fn()
    except cls as e:
        return e
    except Exception as e:  # noqa: BLE001
        print(f"unexpected {type(e).__name__}: {e}", file=sys.stderr)
        return None
    return None

e = raises(openai.NotFoundError, lambda: client.completions.create(model="nope", prompt="x"))
d.check("unknown model: NotFoundError", e is not None and e.code == "model_not_found")
e = raises(openai.BadRequestError, lambda: client.completions.create(
    model=NAME, prompt="x", temperature=5))
d.check("temperature 5: BadRequestError naming the field", e is not None and
        e.param == "temperature")
e = raises(openai.BadRequestError, lambda: client.completions.create(
    model=NAME, prompt="x", extra_body={"max_tokens": "ten"}))
d.check("wrong type: BadRequestError", e is not None and e.param == "max_tokens")
e = raises(openai.BadRequestError, lambda: client.chat.completions.create(
    model=NAME, messages=[]))
d.check("empty messages: BadRequestError", e is not None and e.param == "messages")
e = raises(openai.BadRequestError, lambda: client.completions.create(
    model=NAME, prompt="x", n=2))
d.check("n=2: BadRequestError", e is not None and e.param == "n")
e = raises(openai.BadRequestError, lambda: client.completions.create(
    model=NAME, prompt="hello " * 600))
d.check("prompt over the context length: BadRequestError", e is not None and
        "context length" in e.message)
e = raises(openai.BadRequestError, lambda: client.completions.create(
    model=NAME, prompt="hello", max_tokens=600))
d.check("max_tokens over the context: BadRequestError", e is not None)
e = raises(openai.APIStatusError, lambda: client.completions.create(
    model=NAME, prompt="x" * 300000))
d.check("body over --max-body-bytes: 413", e is not None and e.status_code == 413)

fk = d.frontend(["--api-key", "sekrit"])
bad = openai.OpenAI(base_url=fk.url + "/v1", api_key="wrong", max_retries=0)
good = openai.OpenAI(base_url=fk.url + "/v1", api_key="sekrit", max_retries=0)
e = raises(openai.AuthenticationError, lambda: bad.models.list())
d.check("wrong API key: AuthenticationError", e is not None)
d.check("right API key", d.wait_until(lambda: good.completions.create(
    model=NAME, prompt=prompt).choices[0].text == want))
st, _ = d.http_get(fk.url + "/health")
d.check("/health needs no key", st == 200)

# 503: a model whose only instance does not answer (a card copied from a
# real worker, pointing at a closed port).
dyn_env = dict(os.environ, DYN_STORE=d.store)
card = subprocess.run([d.DYN, "store", "get", f"v1/models/{NAME}/{w1.id}"],
                      capture_output=True, text=True, env=dyn_env).stdout
c = json.loads(card)
c["name"] = "ghost"
c["instance_id"] = "00000000000000ab"
subprocess.run([d.DYN, "store", "put", "v1/instances/dyn/backend/generate/00000000000000ab",
                json.dumps({"namespace": "dyn", "component": "backend", "endpoint": "generate",
                            "instance_id": "00000000000000ab", "address": "127.0.0.1:1",
                            "transport": "tcp", "pid": 1, "metadata": {}})], env=dyn_env)
subprocess.run([d.DYN, "store", "put", "v1/models/ghost/00000000000000ab", json.dumps(c)],
               env=dyn_env)
d.wait_until(lambda: "ghost" in [m.id for m in client.models.list().data])
e = raises(openai.APIStatusError, lambda: client.completions.create(model="ghost", prompt="x"))
d.check("no worker answers: 503", e is not None and e.status_code == 503)
subprocess.run([d.DYN, "store", "rm", "v1/models/ghost/00000000000000ab"], env=dyn_env)
d.check("model removed with its last card", d.wait_until(
    lambda: "ghost" not in [m.id for m in client.models.list().data]))

# Round-robin over the two workers (their own /metrics count requests).
def worker_requests(w):
    _, t = d.http_get(f"http://127.0.0.1:{w.sys_port}/metrics")
    return d.metric(t, "dyn_worker_requests_total") or 0

before = [worker_requests(w1), worker_requests(w2)]
for _ in range(10):
    client.completions.create(model=NAME, prompt="One day")
after = [worker_requests(w1), worker_requests(w2)]
d.check("round-robin: 5 requests each", [a - b for a, b in zip(after, before)] == [5, 5],
        f"{before} -> {after}")
st, body = d.http_get(f"http://127.0.0.1:{w1.sys_port}/health")
d.check("worker /health", st == 200 and "healthy" in body)
st, _ = d.http_get(f"http://127.0.0.1:{w1.sys_port}/live")
d.check("worker /live", st == 200)

# Metrics, and promtool's verdict on them.
_, mt = d.http_get(fe.url + "/metrics")
d.check("frontend metrics", d.metric(mt, "dyn_frontend_requests_total", model=NAME,
                                      endpoint="completions", status="200") >= 10 and
        d.metric(mt, "dyn_frontend_workers", model=NAME) == 2 and
        d.metric(mt, "dyn_frontend_time_to_first_token_seconds_count", model=NAME) > 0 and
        d.metric(mt, "dyn_frontend_output_tokens_total", model=NAME) > 0)
promtool = shutil.which("promtool")
if promtool:
    for what, url in (("frontend", fe.url), ("worker", f"http://127.0.0.1:{w1.sys_port}")):
        _, t = d.http_get(url + "/metrics")
        p = subprocess.run([promtool, "check", "metrics"], input=t, capture_output=True,
                           text=True)
        d.check(f"promtool check metrics ({what})", p.returncode == 0, p.stdout + p.stderr)
else:
    d.skip("promtool check metrics", "promtool not installed (Debian package prometheus)")

st, body = d.http_get(fe.url + "/openapi.json")
doc = json.loads(body)
d.check("/openapi.json", st == 200 and doc["openapi"].startswith("3.") and
        "/v1/chat/completions" in doc["paths"] and "/v1/completions" in doc["paths"])

# A worker killed with SIGKILL: requests keep succeeding on the other, and it
# is dropped from the model within its lease TTL (1.5 s, reaped within +1 s).
w1.stop(signal.SIGKILL)
t0 = time.time()
oks = sum(client.completions.create(model=NAME, prompt=prompt).choices[0].text == want
          for _ in range(6))
d.check("requests succeed after a worker is killed", oks == 6, f"{oks}/6")
dropped = d.wait_until(lambda: d.metric(d.http_get(fe.url + "/metrics")[1],
                                        "dyn_frontend_workers", model=NAME) == 1, timeout=10)
d.check("killed worker dropped within its lease TTL",
        dropped and time.time() - t0 < 1.5 + 2.5, f"{time.time() - t0:.1f}s")

w2.stop()
d.check("model gone with its last worker", d.wait_until(
    lambda: client.models.list().data == []))
e = raises(openai.NotFoundError, lambda: client.completions.create(model=NAME, prompt="x"))
d.check("no workers: NotFoundError for the vanished model", e is not None)
d.finish()
