"""frontend_openai - the frontend through the official OpenAI Python SDK.

Workers run the echo engine, so the text that comes back is known: the
prompt's own tokens, detokenized after the prompt.  The expected text is
computed with Hugging Face `tokenizers` (the reference implementation)
from the model's tokenizer.json, never with dyn's own tokenizer.
"""
import http.client
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
with open(os.path.join(d.MODEL, "tokenizer.json"), encoding="utf-8") as fh:
    SPECIAL = {t["id"] for t in json.load(fh)["added_tokens"] if t["special"]}


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

# Each logprob entry carries exactly its share of the text: after the BOS
# that the echoed prompt starts with (a skipped special token), the next
# token keeps its leading space; characters split over byte-fallback pieces
# give raw bytes.  Reference: the text itself (Python bytes and strings).
for msg in ["Hello there, Tim the happy dog", "héllo wörld €5 — ok", "naïve 日本"]:
    cids = chat_ids(msg)
    for stream in (False, True):
        if stream:
            chunks = list(client.chat.completions.create(
                model=NAME, messages=[{"role": "user", "content": msg}], logprobs=True,
                top_logprobs=2, stream=True))
            content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
            lp = [e for c in chunks if c.choices and c.choices[0].logprobs
                  for e in c.choices[0].logprobs.content]
        else:
            r = client.chat.completions.create(model=NAME, messages=[{"role": "user",
                                                                     "content": msg}],
                                               logprobs=True, top_logprobs=2)
            content = r.choices[0].message.content
            lp = r.choices[0].logprobs.content
        joined = b"".join(bytes(e.bytes) for e, i in zip(lp, cids) if i not in SPECIAL)
        whole = all(e.token.encode() == bytes(e.bytes) for e in lp
                    if not e.token.startswith("bytes:"))
        d.check(f"chat logprobs bytes join to the content ({msg!r}, stream={stream})",
                len(lp) == len(cids) and content == echo_text(cids) and
                joined == content.encode() and whole,
                f"{content!r} vs {joined!r} {[(e.token, e.bytes) for e in lp[:4]]}")

for text in ["hello world he", "Once upon a time"]:
    pids = completion_ids(text)
    r = client.completions.create(model=NAME, prompt=text, logprobs=1)
    lp = r.choices[0].logprobs
    toks = [t for t, i in zip(lp.tokens, pids) if i not in SPECIAL]
    d.check(f"completion logprob tokens join to the text after BOS ({text!r})",
            lp.tokens[0] == "<s>" and "".join(toks) == r.choices[0].text ==
            echo_text(pids), f"{lp.tokens} / {r.choices[0].text!r}")

# text_offset counts characters (Python string indexes), not bytes.
for text in ["éé hé", "a€b — naïve", "Lily’s cat"]:
    pids = completion_ids(text)
    r = client.completions.create(model=NAME, prompt=text, logprobs=1)
    t, lp = r.choices[0].text, r.choices[0].logprobs
    pairs = [(tok, o) for tok, o, i in zip(lp.tokens, lp.text_offset, pids)
             if i not in SPECIAL]
    whole = [(tok, o) for tok, o in pairs if not tok.startswith("bytes:")]
    ends = [o for _, o in pairs]
    d.check(f"completion text_offset in characters ({text!r})",
            t == echo_text(pids) and ends == sorted(ends) and len(whole) > 0 and
            all(t[o:o + len(tok)] == tok for tok, o in whole) and
            all(o <= len(t) for o in ends),
            f"{t!r} {list(zip(lp.tokens, lp.text_offset))}")
r = client.completions.create(model=NAME, prompt="éé hé", logprobs=1, echo=True)
t, lp = r.choices[0].text, r.choices[0].logprobs
d.check("echo: text_offset indexes the echoed text",
        t == "éé hé" + echo_text(completion_ids("éé hé")) and
        all(t[o:o + len(tok)] == tok for tok, o in zip(lp.tokens, lp.text_offset)
            if tok != "<s>" and not tok.startswith("bytes:")) and
        # the prompt's entries, then as many for its echo (from the prompt's end)
        lp.text_offset[len(lp.tokens) // 2] == len("éé hé"),
        f"{t!r} {list(zip(lp.tokens, lp.text_offset))}")
r = client.completions.create(model=NAME, prompt="éé hé", logprobs=1, stream=True)
offs = [o for c in r if c.choices and c.choices[0].logprobs
        for o in c.choices[0].logprobs.text_offset]
want_offs = client.completions.create(model=NAME, prompt="éé hé", logprobs=1).choices[0]
d.check("streamed text_offset equals the non-streamed one",
        offs == want_offs.logprobs.text_offset, f"{offs} vs {want_offs.logprobs.text_offset}")


# A second audit (issue 7).  Whatever the SDK cannot parse raises: a check.
def sdk_check(name, fn, cond):
    try:
        v = fn()
    except Exception as x:  # noqa: BLE001 - any failure is the check failing
        d.check(name, False, repr(x))
        return None
    d.check(name, cond(v), repr(v)[:600])
    return v


def completion_chunks(**kw):
    return list(client.completions.create(model=NAME, stream=True, **kw))


def chat_chunks(**kw):
    return list(client.chat.completions.create(
        model=NAME, messages=[{"role": "user", "content": "x"}], stream=True, **kw))


def lp_tokens(chunks):
    return [t for c in chunks if c.choices and c.choices[0].logprobs
            for t in c.choices[0].logprobs.tokens]


# max_tokens 0 with logprobs: empty logprobs, valid JSON (no "(null)").
sdk_check("completion, max_tokens 0, logprobs: empty logprob lists",
          lambda: client.completions.create(model=NAME, prompt="x", max_tokens=0, logprobs=1),
          lambda r: r.choices[0].text == "" and r.choices[0].logprobs.tokens == [] and
          r.choices[0].logprobs.text_offset == [] and r.choices[0].finish_reason == "length")
sdk_check("streamed completion, max_tokens 0, logprobs",
          lambda: completion_chunks(prompt="x", max_tokens=0, logprobs=1),
          lambda ch: lp_tokens(ch) == [] and ch[-1].choices[0].finish_reason == "length")
sdk_check("chat, max_tokens 0, logprobs: empty content list",
          lambda: client.chat.completions.create(
              model=NAME, messages=[{"role": "user", "content": "x"}], max_tokens=0,
              logprobs=True),
          lambda r: r.choices[0].message.content == "" and r.choices[0].logprobs.content == [])
sdk_check("streamed chat, max_tokens 0, logprobs",
          lambda: chat_chunks(max_tokens=0, logprobs=True),
          lambda ch: ch[-1].choices[0].finish_reason == "length" and
          all(e.token for c in ch if c.choices and c.choices[0].logprobs
              for e in c.choices[0].logprobs.content or []))
# The stream begins (status line, headers) before the echoed prompt, and a
# chat stream has exactly one role chunk.
sdk_check("streamed completion, echo, max_tokens 0: the prompt",
          lambda: completion_chunks(prompt=prompt, echo=True, max_tokens=0),
          lambda ch: "".join(c.choices[0].text for c in ch if c.choices) == prompt and
          ch[-1].choices[0].finish_reason == "length")
sdk_check("streamed chat, max_tokens 0: one role chunk",
          lambda: chat_chunks(max_tokens=0, stream_options={"include_usage": True}),
          lambda ch: sum(1 for c in ch if c.choices and c.choices[0].delta.role) == 1 and
          ch[0].choices[0].delta.role == "assistant" and ch[-1].usage.completion_tokens == 0)


# Byte-fallback pieces of a character the text never completes: each
# logprob token is its own raw byte as OpenAI writes it ("bytes:\xNN"; the
# reference is the vocabulary's "<0xNN>" piece), the U+FFFD replacement is
# text only, and a following whole token keeps its text.  The echo worker's
# logprob is 0 for the token it sends, so each token is its own top-1 key.
def byte_token(i):
    t = hf.id_to_token(i)
    return f"bytes:\\x{int(t[3:5], 16):02x}" if t.startswith("<0x") else t.replace("\u2581", " ")


def lp_consistent(text, lp, ids):
    offs = lp.text_offset
    return (lp.tokens == [byte_token(i) for i in ids] and
            all(top is None or list(top.keys())[0] == tok   # None: an echoed prompt's first
                for tok, top in zip(lp.tokens, lp.top_logprobs)) and
            offs == sorted(offs) and all(o <= len(text) for o in offs))


bad = [233, 154, 400]
assert hf.id_to_token(233) == "<0xE6>" and hf.id_to_token(154) == "<0x97>"
# <0xE6><0x97>, then <0xE6><0x97><0xA5> (a whole character: 日)
bad2 = [233, 154, 233, 154, 168]
assert hf.id_to_token(168) == "<0xA5>"
for b in (bad, bad2):
    sdk_check(f"logprobs over an invalid byte run {b}: raw byte tokens, monotonic offsets",
              lambda: client.completions.create(model=NAME, prompt=b, logprobs=1),
              lambda r: lp_consistent(r.choices[0].text, r.choices[0].logprobs, b) and
              r.choices[0].text == echo_text(b))


def joined_lp(chunks):
    class J:
        tokens, top_logprobs, text_offset = [], [], []
    for c in chunks:
        if c.choices and c.choices[0].logprobs:
            J.tokens += c.choices[0].logprobs.tokens
            J.top_logprobs += c.choices[0].logprobs.top_logprobs
            J.text_offset += c.choices[0].logprobs.text_offset
    return "".join(c.choices[0].text for c in chunks if c.choices), J


sdk_check("streamed logprobs over an invalid byte run",
          lambda: joined_lp(completion_chunks(prompt=bad, logprobs=1)),
          lambda tj: lp_consistent(tj[0], tj[1], bad))
sdk_check("streamed echo of an incomplete character, with logprobs",
          lambda: joined_lp(completion_chunks(prompt=bad[:2], logprobs=1, echo=True)),
          lambda tj: lp_consistent(tj[0], tj[1], bad[:2] + bad[:2]) and
          tj[0] == hf.decode(bad[:2] + bad[:2]))

# Without max_tokens, completions stop after 16 tokens (as OpenAI's and
# vLLM's); chat runs on.
long_prompt = " ".join(["Once upon a time there was a little girl named Lily"] * 3)
lids = completion_ids(long_prompt)
assert len(lids) > 20
r = client.completions.create(model=NAME, prompt=lids)
d.check("completions default to 16 tokens", r.usage.completion_tokens == 16 and
        r.choices[0].finish_reason == "length", str(r.usage))
r = client.chat.completions.create(model=NAME, messages=[{"role": "user", "content": long_prompt}])
d.check("chat has no 16-token default", r.usage.completion_tokens == len(chat_ids(long_prompt)) and
        r.choices[0].finish_reason == "stop", str(r.usage))


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
    model=NAME, prompt="x", n=17))
d.check("n=17 (over 16): BadRequestError", e is not None and e.param == "n")
for empty in ([], [[]]):
    e = raises(openai.BadRequestError, lambda: client.completions.create(
        model=NAME, prompt=empty))
    d.check(f"prompt {empty}: BadRequestError naming prompt", e is not None and
            e.status_code == 400 and e.param == "prompt")
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
e = raises(openai.InternalServerError, lambda: client.completions.create(
    model="ghost", prompt="x"))
d.check("no worker answers: InternalServerError 503", e is not None and
        e.status_code == 503 and e.body and e.body.get("type") == "service_unavailable")
subprocess.run([d.DYN, "store", "rm", "v1/models/ghost/00000000000000ab"], env=dyn_env)
d.check("model removed with its last card", d.wait_until(
    lambda: "ghost" not in [m.id for m in client.models.list().data]))

# 500: a model whose instance is a live worker that fails the call (its
# card names an endpoint that worker does not serve).
wc = json.loads(subprocess.run([d.DYN, "store", "get",
                                f"v1/instances/dyn/backend/generate/{w1.id}"],
                               capture_output=True, text=True, env=dyn_env).stdout)
c["name"] = "broken"
c["instance_id"] = "00000000000000ac"
c["endpoint"] = "nosuch"
subprocess.run([d.DYN, "store", "put", "v1/instances/dyn/backend/nosuch/00000000000000ac",
                json.dumps(dict(wc, endpoint="nosuch", instance_id="00000000000000ac"))],
               env=dyn_env)
subprocess.run([d.DYN, "store", "put", "v1/models/broken/00000000000000ac", json.dumps(c)],
               env=dyn_env)
d.wait_until(lambda: "broken" in [m.id for m in client.models.list().data])
for stream in (False, True):
    def call():
        r = client.completions.create(model="broken", prompt="x", stream=stream)
        if stream:
            list(r)
    e = raises(openai.InternalServerError, call)
    d.check(f"the worker fails the call: InternalServerError 500 (stream={stream})",
            e is not None and e.status_code == 500 and
            e.body and e.body.get("type") == "internal_server_error", repr(e))
subprocess.run([d.DYN, "store", "rm", "v1/models/broken/00000000000000ac"], env=dyn_env)
subprocess.run([d.DYN, "store", "rm", "v1/instances/dyn/backend/nosuch/00000000000000ac"],
               env=dyn_env)
d.check("the broken model goes with its card", d.wait_until(
    lambda: "broken" not in [m.id for m in client.models.list().data]))

# A worker killed mid-stream: the stream ends with an error event (the SDK
# raises APIError), and the frontend goes on serving.
slow = d.worker(name="slow", delay=100, ttl=1500)
d.wait_until(lambda: "slow" in [m.id for m in client.models.list().data])
got, err = [], None
try:
    for ch in client.completions.create(model="slow", prompt=prompt, stream=True):
        got.append(ch)
        if len(got) == 3:
            slow.stop(signal.SIGKILL)
except openai.APIError as x:
    err = x
d.check("a worker killed mid-stream: APIError in the stream", len(got) >= 3 and
        err is not None and not isinstance(err, openai.APIConnectionError), repr(err))
d.check("a worker killed mid-stream: the client is not shown the worker's address",
        err is not None and "127.0.0.1" not in str(err) and "127.0.0.1" not in repr(err.body)
        and "connection to the worker was lost" in str(err), repr(err))
d.check("the frontend stays up after a mid-stream failure",
        d.http_get(fe.url + "/health")[0] == 200 and
        client.completions.create(model=NAME, prompt=prompt).choices[0].text == want)

# Output tokens are counted as they are streamed: a client that goes away
# mid-stream still had them (input and output counters both move).
drip = d.worker(name="drip", delay=100, ttl=1500)
d.wait_until(lambda: "drip" in [m.id for m in client.models.list().data])
got = 0
with client.completions.create(model="drip", prompt=lids, stream=True,
                               max_tokens=len(lids)) as s:
    for ch in s:
        got += bool(ch.choices and ch.choices[0].text)
        if got == 3:
            break


def drip_tokens():
    t = d.http_get(fe.url + "/metrics")[1]
    return (d.metric(t, "dyn_frontend_input_tokens_total", model="drip") or 0,
            d.metric(t, "dyn_frontend_output_tokens_total", model="drip") or 0,
            d.metric(t, "dyn_frontend_inflight_requests", model="drip"))


d.check("a disconnected stream's output tokens are counted",
        d.wait_until(lambda: drip_tokens()[2] == 0) and drip_tokens()[0] == len(lids) and
        3 <= drip_tokens()[1] < len(lids), str(drip_tokens()))
drip.stop()

# Response ids are unique within a frontend and across replicas, even when
# every replica is PID 1 (as in containers: a PID namespace shows that).
seen = [client.completions.create(model=NAME, prompt="x", max_tokens=1).id for _ in range(20)]
seen += list({c.id for c in client.completions.create(model=NAME, prompt="x", max_tokens=1,
                                                       stream=True)})
d.check("ids unique within a frontend", len(seen) == 21 and len(set(seen)) == 21, str(seen[:3]))


def pid1_frontend():
    """A frontend that is PID 1 in its own PID namespace (None: unsupported)."""
    unshare = shutil.which("unshare")
    if not unshare or subprocess.run([unshare, "-Urpf", "true"], capture_output=True).returncode:
        return None
    saved, d.DYN = d.DYN, unshare
    try:
        return d.Proc(["-Urpf", "--kill-child", saved, "frontend", "--http-port", "0",
                       "--http-host", "127.0.0.1"], r"listening on http://[^:]+:(\d+)")
    finally:
        d.DYN = saved


firsts = []
for _ in range(2):
    f2 = pid1_frontend()
    # unshare ignores SIGTERM; killed, it has the kernel kill its child
    stop_sig = signal.SIGKILL if f2 else signal.SIGTERM
    f2 = f2 or d.frontend()
    f2.port = int(f2.m.group(1))
    c2 = openai.OpenAI(base_url=f"http://127.0.0.1:{f2.port}/v1", api_key="unused",
                       max_retries=0, timeout=30)
    d.wait_until(lambda: NAME in [m.id for m in c2.models.list().data])
    firsts.append(c2.completions.create(model=NAME, prompt="x", max_tokens=1).id)
    f2.stop(stop_sig)
d.check("two frontends' first ids differ (both PID 1 where namespaces allow)",
        firsts[0] != firsts[1] and all(i.startswith("cmpl-") for i in firsts), str(firsts))

# tools, tool_choice and chat_template_kwargs reach the chat template: an
# echo worker of Qwen3's shape answers with the prompt the frontend built,
# which must be jinja2's rendering of the model's template (configured as
# transformers does, see template_conformance.py) tokenized by HF tokenizers.
QWEN = os.path.join(os.path.dirname(d.MODEL), "qwen3-0.6b-shape")
if not os.path.isdir(QWEN):
    d.skip("tools and chat_template_kwargs reach the template", f"no {QWEN}")
else:
    import jinja2
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import template_conformance as tc
    qw = d.Proc(["serve", "--model", QWEN, "--served-model-name", "qwen3", "--engine", "echo",
                 "--system-port", "0", "--lease-ttl", "1500"],
                r"instance ([0-9a-f]{16}) .* system port (\d+)",
                env={"DYN_TOKEN_ECHO_DELAY_MS": "0"})
    d.wait_until(lambda: "qwen3" in [m.id for m in client.models.list().data])
    qhf = Tokenizer.from_file(os.path.join(QWEN, "tokenizer.json"))
    with open(os.path.join(QWEN, "tokenizer_config.json"), encoding="utf-8") as fh:
        qcfg = json.load(fh)
    qtmpl = tc.make_env(jinja2).from_string(qcfg["chat_template"])
    tools = [{"type": "function", "function": {
        "name": "get_weather", "description": "Current weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"},
                                                        "unit": {"enum": ["C", "F"]}},
                       "required": ["city"]}}}]
    msgs = [{"role": "system", "content": "You are terse."},
            {"role": "user", "content": "Weather in Zürich?"},
            {"role": "assistant", "content": "", "tool_calls": [{
                "id": "call_1", "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city": "Zürich"}'}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "{\"temp\": 21}"},
            {"role": "user", "content": "And in °F?"}]
    seen = set()
    for label, extra, kwargs in (
            ("tools, tool_choice auto, enable_thinking false",
             {"tools": tools, "tool_choice": "auto"}, {"enable_thinking": False}),
            ("tools, tool_choice none", {"tools": tools, "tool_choice": "none"}, {}),
            ("no tools, enable_thinking true", {}, {"enable_thinking": True})):
        variables = dict(tc.special_tokens(qcfg), **kwargs)
        if "tool_choice" in extra:
            variables["tool_choice"] = extra["tool_choice"]
        rendered = qtmpl.render(messages=msgs, tools=extra.get("tools"), documents=None,
                                add_generation_prompt=True, **variables)
        qids = qhf.encode(rendered, add_special_tokens=False).ids
        head = qhf.decode(qids, skip_special_tokens=True)
        qwant = qhf.decode(qids + qids, skip_special_tokens=True)[len(head):]
        r = client.chat.completions.create(model="qwen3", messages=msgs,
                                           extra_body={"chat_template_kwargs": kwargs}, **extra)
        got = r.choices[0].message.content
        seen.add(got)
        d.check(f"template gets {label} (jinja2 + HF tokenizers reference)",
                got == qwant and r.usage.prompt_tokens == len(qids) and
                ("<tools>" in got) == ("tools" in extra),
                f"{r.usage.prompt_tokens} vs {len(qids)} tokens\n{got!r}\n{qwant!r}")
    d.check("the three requests render differently", len(seen) == 3)

    def qwen_echo(rendered, hf_tok=qhf):
        """The prompt ids and the echo worker's answer for a rendered prompt."""
        ids = hf_tok.encode(rendered, add_special_tokens=False).ids
        head = hf_tok.decode(ids, skip_special_tokens=True)
        return ids, hf_tok.decode(ids + ids, skip_special_tokens=True)[len(head):]

    # add_generation_prompt and continue_final_message (an assistant
    # prefill), as vLLM takes them; continue_final_message is transformers'
    # post-processing of the render (template_conformance.continue_final).
    variables = tc.special_tokens(qcfg)
    chat = msgs[:2]
    prefill = msgs[:2] + [{"role": "assistant", "content": "It is 21 degrees"}]
    answers = []
    for label, messages, body, rendered in (
            ("add_generation_prompt false", chat, {"add_generation_prompt": False},
             qtmpl.render(messages=chat, tools=None, documents=None,
                          add_generation_prompt=False, **variables)),
            ("add_generation_prompt true", chat, {"add_generation_prompt": True},
             qtmpl.render(messages=chat, tools=None, documents=None,
                          add_generation_prompt=True, **variables)),
            ("continue_final_message with add_generation_prompt false", prefill,
             {"continue_final_message": True, "add_generation_prompt": False},
             tc.continue_final(qtmpl.render(messages=prefill, tools=None, documents=None,
                                            add_generation_prompt=False, **variables),
                               prefill)),
            ("continue_final_message alone (add_generation_prompt then defaults to false)",
             prefill, {"continue_final_message": True},
             tc.continue_final(qtmpl.render(messages=prefill, tools=None, documents=None,
                                            add_generation_prompt=False, **variables),
                               prefill))):
        qids, qwant = qwen_echo(rendered)
        for stream in (False, True):
            if stream:
                got = "".join(c.choices[0].delta.content or "" for c in
                              client.chat.completions.create(model="qwen3", messages=messages,
                                                             extra_body=body, stream=True)
                              if c.choices)
                n = len(qids)
            else:
                r = client.chat.completions.create(model="qwen3", messages=messages,
                                                   extra_body=body)
                got, n = r.choices[0].message.content, r.usage.prompt_tokens
                answers.append(got)
            d.check(f"{label} (stream={stream}; jinja2 + HF tokenizers reference)",
                    got == qwant and n == len(qids), f"{n} vs {len(qids)}\n{got!r}\n{qwant!r}")
    d.check("with and without the generation prompt differ; the prefills agree",
            len(set(answers)) == 3 and answers[2] == answers[3], repr(answers))
    d.check("the prefill ends the prompt (nothing after the assistant's text)",
            qwen_echo(tc.continue_final(qtmpl.render(
                messages=prefill, add_generation_prompt=False, **variables),
                prefill))[1].endswith("It is 21 degrees"))
    for body, param in (({"continue_final_message": True, "add_generation_prompt": True},
                         "continue_final_message"),
                        ({"continue_final_message": "yes"}, "continue_final_message"),
                        ({"add_generation_prompt": 1}, "add_generation_prompt"),
                        ({"documents": {"text": "x"}}, "documents"),
                        ({"documents": ["x"]}, "documents")):
        e = raises(openai.BadRequestError, lambda: client.chat.completions.create(
            model="qwen3", messages=prefill, extra_body=body))
        d.check(f"{body}: BadRequestError naming {param}", e is not None and
                e.status_code == 400 and e.param == param, repr(e))

    # documents reach the template: Granite 3.3's template (which renders
    # them; Qwen3's ignores them) in a copy of the Qwen3-shaped model.
    def template_worker(name, template_file):
        """An echo worker serving a copy of the Qwen3-shaped model under name,
        with ../shared/templates/template_file as its chat template; returns
        the worker and the template compiled by jinja2."""
        path = os.path.join(os.path.dirname(d.MODEL), "..", "templates", template_file)
        mdir = os.path.join(d.tmp, name)
        os.mkdir(mdir)
        for f in ("config.json", "tokenizer.json"):
            shutil.copy(os.path.join(QWEN, f), mdir)
        with open(path, encoding="utf-8") as fh:
            src = fh.read()
        with open(os.path.join(mdir, "tokenizer_config.json"), "w", encoding="utf-8") as fh:
            json.dump(dict(qcfg, chat_template=src), fh)
        w = d.Proc(["serve", "--model", mdir, "--served-model-name", name,
                    "--engine", "echo", "--system-port", "0", "--lease-ttl", "1500"],
                   r"instance ([0-9a-f]{16}) .* system port (\d+)",
                   env={"DYN_TOKEN_ECHO_DELAY_MS": "0"})
        d.wait_until(lambda: name in [m.id for m in client.models.list().data])
        return w, tc.make_env(jinja2).from_string(src)

    gw, gtmpl = template_worker("granite-docs", "ibm-granite-granite-3.3-2B-Instruct.jinja")
    docs = [{"doc_id": 1, "text": "Zürich lies on the Limmat."},
            {"doc_id": "b", "title": "Weather", "text": "It was 21 °C yesterday."}]
    # With a system message, so that the template does not print today's
    # date (strftime_now) and the reference cannot race midnight.
    for label, body, rendered in (
            ("documents", {"documents": docs},
             gtmpl.render(messages=chat, documents=docs, add_generation_prompt=True,
                          **variables)),
            ("documents with add_generation_prompt false",
             {"documents": docs, "add_generation_prompt": False},
             gtmpl.render(messages=chat, documents=docs, add_generation_prompt=False,
                          **variables)),
            ("no documents", {},
             gtmpl.render(messages=chat, add_generation_prompt=True, **variables))):
        gids, gwant = qwen_echo(rendered)
        r = client.chat.completions.create(model="granite-docs", messages=chat,
                                           extra_body=body)
        got = r.choices[0].message.content
        d.check(f"template gets {label} (Granite 3.3; jinja2 + HF tokenizers reference)",
                got == gwant and r.usage.prompt_tokens == len(gids) and
                ("Limmat" in got) == ("documents" in body),
                f"{r.usage.prompt_tokens} vs {len(gids)}\n{got!r}\n{gwant!r}")
    gw.stop()

    # Tool-call arguments (a JSON string in the OpenAI API) reach the
    # template as the object they encode, as vLLM passes them: Llama 3.1's
    # template prints them with tojson, so a string would come out quoted.
    lw, ltmpl = template_worker("llama-tools", "meta-llama-Llama-3.1-8B-Instruct.jinja")
    kw = {"date_string": "26 Jul 2024"}	# no strftime_now: no midnight race
    parsed = json.loads(json.dumps(msgs))
    parsed[2]["tool_calls"][0]["function"]["arguments"] = {"city": "Zürich"}
    lids, lwant = qwen_echo(ltmpl.render(messages=parsed, tools=tools, documents=None,
                                         add_generation_prompt=True, **variables, **kw))
    r = client.chat.completions.create(model="llama-tools", messages=msgs, tools=tools,
                                       extra_body={"chat_template_kwargs": kw})
    got = r.choices[0].message.content
    d.check("tool-call arguments reach the template as an object (Llama 3.1; jinja2 ref)",
            got == lwant and r.usage.prompt_tokens == len(lids) and
            '"parameters": {"city": "Zürich"}' in got, f"{got!r}\n{lwant!r}")
    bad_args = json.loads(json.dumps(msgs))
    bad_args[2]["tool_calls"][0]["function"]["arguments"] = "{not json"
    e = raises(openai.BadRequestError, lambda: client.chat.completions.create(
        model="llama-tools", messages=bad_args, tools=tools))
    d.check("tool-call arguments that are not JSON: 400 naming messages",
            e is not None and e.param == "messages" and "arguments" in str(e), repr(e))
    lw.stop()
    qw.stop()
    d.check("qwen3 gone with its worker", d.wait_until(
        lambda: not {"qwen3", "granite-docs", "llama-tools"} &
        {m.id for m in client.models.list().data}))

# A model whose chat template does not compile is not served chat with a
# substitute: its chat requests fail with 500 quoting the compile error
# (the template is the model's fault, not the client's), and a model with
# no chat template refuses chat with 400, as vLLM does.  Completions work
# for both.  Reference for "does not compile": jinja2 refuses it too.
BROKEN_TMPL = "{% for m in messages %}{{ m['content'] }\n{% endfor %}"
import jinja2  # noqa: E402
jinja2_error = None
try:
    jinja2.Environment().from_string(BROKEN_TMPL)
except jinja2.TemplateSyntaxError as x:
    jinja2_error = x
d.check("the broken template is broken for jinja2 too", jinja2_error is not None)
with open(os.path.join(d.MODEL, "tokenizer_config.json"), encoding="utf-8") as fh:
    scfg = json.load(fh)
bad_workers = []
for name, cfg in (("broken-template", dict(scfg, chat_template=BROKEN_TMPL)),
                  ("no-template", {k: v for k, v in scfg.items() if k != "chat_template"})):
    mdir = os.path.join(d.tmp, name)
    os.mkdir(mdir)
    for f in ("config.json", "tokenizer.json", "generation_config.json"):
        shutil.copy(os.path.join(d.MODEL, f), mdir)
    with open(os.path.join(mdir, "tokenizer_config.json"), "w", encoding="utf-8") as fh:
        json.dump(cfg, fh)
    bad_workers.append(d.Proc(["serve", "--model", mdir, "--served-model-name", name,
                               "--engine", "echo", "--system-port", "0", "--lease-ttl",
                               "1500"], r"instance ([0-9a-f]{16}) .* system port (\d+)",
                              env={"DYN_TOKEN_ECHO_DELAY_MS": "0"}))
d.check("models with a broken or no chat template are listed", d.wait_until(
    lambda: {"broken-template", "no-template"} <= {m.id for m in client.models.list().data}))
for stream in (False, True):
    def chat_call(model):
        def call():
            r = client.chat.completions.create(
                model=model, stream=stream, messages=[{"role": "system", "content": "sys"},
                                                      {"role": "user", "content": "hi"}])
            if stream:
                list(r)
        return call
    e = raises(openai.InternalServerError, chat_call("broken-template"))
    d.check(f"broken chat template: InternalServerError 500 quoting the compile error "
            f"(stream={stream})", e is not None and e.status_code == 500 and
            "does not compile" in e.message and "line 1" in e.message and
            "unexpected '}'" in e.message, repr(e))
    e = raises(openai.BadRequestError, chat_call("no-template"))
    d.check(f"no chat template: BadRequestError 400 (stream={stream})",
            e is not None and e.status_code == 400 and "no chat template" in e.message and
            e.param == "model", repr(e))
for name in ("broken-template", "no-template"):
    r = client.completions.create(model=name, prompt=prompt)
    d.check(f"{name}: completions still served", r.choices[0].text == want)
d.check("the compile error is logged as an error", d.wait_until(
    lambda: "broken-template" in fe.stderr() and "does not compile" in fe.stderr()),
    fe.stderr())
for w in bad_workers:
    w.stop()

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


# The document against what is served: every path and method answers, each
# path documents the 405 that other methods get, and the request schemas
# list exactly the fields the frontend honours (the list).
def schema_props(name):
    sch = doc["components"]["schemas"][name]
    props = {}
    for part in sch.get("allOf", [sch]):
        if "$ref" in part:
            part = doc["components"]["schemas"][part["$ref"].split("/")[-1]]
        props.update(part.get("properties", {}))
    return props


def request(method, path, body=None):
    conn = http.client.HTTPConnection("127.0.0.1", fe.port, timeout=30)
    conn.request(method, path, json.dumps(body) if body is not None else None,
                 {"Content-Type": "application/json"})
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    return resp.status, data


SAMPLING = {"model", "stream", "stream_options", "max_tokens", "max_completion_tokens",
            "temperature", "top_p", "top_k", "min_p", "seed", "stop", "presence_penalty",
            "frequency_penalty", "repetition_penalty", "n", "user", "ignore_eos",
            "min_tokens", "logprobs", "logit_bias", "include_stop_str_in_output",
            "prompt_logprobs", "response_format", "structured_outputs", "guided_json",
            "guided_regex", "guided_choice", "guided_grammar"}
HONOURED = {"ChatRequest": SAMPLING | {"messages", "top_logprobs", "tools", "tool_choice",
                                       "parallel_tool_calls",
                                       "chat_template_kwargs", "documents",
                                       "add_generation_prompt", "continue_final_message"},
            "CompletionRequest": SAMPLING | {"prompt", "echo"}}
VALID = {"/v1/chat/completions": {"model": NAME, "messages": [{"role": "user",
                                                               "content": "hi"}],
                                  "max_tokens": 2},
         "/v1/completions": {"model": NAME, "prompt": "hi", "max_tokens": 2}}
for path, methods in doc["paths"].items():
    url = path.replace("{model}", NAME)
    for method, op in methods.items():
        st, body = request(method.upper(), url, VALID.get(path))
        d.check(f"documented {method.upper()} {path} answers", st not in (404, 405) and
                str(st) in op["responses"], f"{st} {body[:200]!r}")
        other = "GET" if method == "post" else "DELETE"
        st, body = request(other, url)
        d.check(f"{other} {path}: 405, documented", st == 405 and "405" in op["responses"] and
                json.loads(body)["error"]["message"], f"{st} {body[:200]!r}")
for name, path in (("ChatRequest", "/v1/chat/completions"),
                   ("CompletionRequest", "/v1/completions")):
    props = schema_props(name)
    d.check(f"{name}: documented fields are the honoured ones", set(props) == HONOURED[name],
            f"extra {set(props) - HONOURED[name]}, missing {HONOURED[name] - set(props)}")

    def types(sch):
        if "oneOf" in sch:
            return set().union(*(types(x) for x in sch["oneOf"]))
        t = sch.get("type")
        return {"number", "integer"} if t == "number" else {t}

    for field, sch in sorted(props.items()):
        # a value of a JSON type the schema does not allow
        wrong = next(v for v, t in ((2.5, "number"), ("x", "string"), (True, "boolean"),
                                    ({"a": 1}, "object")) if t not in types(sch))
        body = dict(VALID[path], **{field: wrong})
        st, data = request("POST", path, body)
        err = json.loads(data).get("error", {}) if data.startswith(b"{") else {}
        d.check(f"{name}.{field} = {wrong!r}: 400 naming the field",
                st == 400 and err.get("param") == field, f"{st} {data[:200]!r}")

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
