"""sampling_api - logit_bias, n > 1, include_stop_str_in_output and prompt
logprobs on stories260K (builtin engine, F32 KV cache), through the
official OpenAI Python SDK.

References are independent of dyn: transformers (torch on the CPU, F32,
offline) on the same weights for the logits (the greedy token and the
runner-up, every prompt position's log_softmax), and the model's
published greedy text (expected_greedy_from_bos.txt) for stop strings.
Prompts are sent as token ids so that tokenization is not in question.
"""
import json
import os
import sys

os.environ["HF_HUB_OFFLINE"] = "1"
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "pylib"))
import dynproc as d  # noqa: E402

import openai  # noqa: E402

try:
    import torch
    import transformers
except ImportError as e:
    d.skip("all", f"transformers/torch not installed: {e}")
    d.finish()

NAME = "stories260K"
with open(os.path.join(d.MODEL, "expected_greedy_from_bos.txt")) as fh:
    WANT = fh.read()

hf = transformers.AutoModelForCausalLM.from_pretrained(d.MODEL, dtype=torch.float32).eval()
hftok = transformers.PreTrainedTokenizerFast(tokenizer_file=os.path.join(d.MODEL,
                                                                         "tokenizer.json"))


def ref_logprobs(ids):
    """transformers' F32 log_softmax at every position of ids."""
    with torch.no_grad():
        return torch.log_softmax(hf(torch.tensor([ids])).logits[0].double(), dim=-1)


def piece(prompt, t):
    """The text token t adds after prompt (the tokenizer's decode)."""
    return hftok.decode(prompt + [t])[len(hftok.decode(prompt)):]


# two workers, taken in turn: a prompt's samples must still meet on one
workers = [d.worker(["--threads", "1", "--kv-cache-dtype", "f32"], engine="auto")
           for _ in range(2)]
fe = d.frontend()
client = openai.OpenAI(base_url=fe.url + "/v1", api_key="unused", max_retries=0, timeout=60)


def pools():
    m = json.loads(d.http_get(fe.url + "/v1/models")[1])["data"]
    return [x["dyn"]["pools"]["agg"] for x in m if x["id"] == NAME]


ok = d.wait_until(lambda: pools() == [2])
d.check("two builtin workers register their model", ok, fe.stderr())
if not ok:
    d.finish()

PROMPT = [1] + hftok.encode("Once upon a time, there was a little dog named Max. He",
                            add_special_tokens=False)
ref = ref_logprobs(PROMPT)
order = torch.argsort(ref[-1], descending=True).tolist()
top1, top2 = order[0], order[1]


def greedy1(**kw):
    return client.completions.create(model=NAME, prompt=PROMPT, max_tokens=1, temperature=0,
                                     **kw).choices[0].text


# ---- logit_bias -------------------------------------------------------------
d.check("greedy token is transformers' argmax", greedy1() == piece(PROMPT, top1),
        f"{greedy1()!r} vs {piece(PROMPT, top1)!r}")
got = greedy1(logit_bias={str(top1): -100})
d.check("logit_bias -100 on the greedy token gives transformers' runner-up",
        got == piece(PROMPT, top2), f"{got!r} vs {piece(PROMPT, top2)!r}")
low = order[-1]
got = greedy1(logit_bias={str(low): 100})
d.check("logit_bias +100 makes the least likely token the greedy one",
        got == piece(PROMPT, low), f"{got!r} vs {piece(PROMPT, low)!r}")
got = greedy1(logit_bias={str(top1): -100}, logprobs=1)
d.check("logit_bias also applies with logprobs", got == piece(PROMPT, top2), repr(got))
for bad, why in (({"abc": 1}, "not a token id"), ({"5": 101}, "between -100 and 100"),
                 ({"5": "x"}, "between -100 and 100"), ({"-3": 1}, "not a token id"),
                 ({"99999": 1}, "outside the vocabulary")):
    try:
        greedy1(logit_bias=bad)
        d.check(f"logit_bias {bad} refused", False, "accepted")
    except openai.BadRequestError as e:
        d.check(f"logit_bias {bad} refused with 400", why in str(e), str(e))

# ---- n ------------------------------------------------------------------------
r = client.completions.create(model=NAME, prompt=PROMPT, max_tokens=12, temperature=0, n=3)
texts = [c.text for c in r.choices]
want = hftok.decode(PROMPT + [top1])[len(hftok.decode(PROMPT)):]
d.check("n=3 greedy: three identical choices, indexes 0..2",
        [c.index for c in r.choices] == [0, 1, 2] and len(set(texts)) == 1 and
        texts[0].startswith(want), str(r.choices))
d.check("n=3 usage: the prompt once, every completion token",
        r.usage.prompt_tokens == len(PROMPT) and r.usage.completion_tokens == 36, str(r.usage))


def cache_hits():
    return sum(h for _, h in d.worker_counters(workers).values())


# a prompt of its own (nothing of it cached), more than two KV blocks
P2 = [1] + hftok.encode("The sun was shining and the birds were singing in the tall green "
                        "trees when Tom and his sister went out to play in the garden.",
                        add_special_tokens=False)
h0 = cache_hits()
r = client.completions.create(model=NAME, prompt=P2, max_tokens=30, temperature=1.0, n=4,
                              seed=7)
hits = cache_hits() - h0
texts = [c.text for c in r.choices]
d.check("n=4 sampled: four distinct choices", len(set(texts)) == 4, str(texts))
# the first sample prefills the prompt; the 3 others go to the same worker
# and take its full blocks (all but at most one block's tokens) from its
# prefix cache
d.check("n=4: the prompt is prefilled once (prefix-cache hits for the other 3)",
        hits >= 3 * (len(P2) - 16), f"{hits} hits, prompt {len(P2)} tokens")
r2 = client.completions.create(model=NAME, prompt=P2, max_tokens=30, temperature=1.0, n=4,
                               seed=7)
d.check("n=4 with a seed reproduces", [c.text for c in r2.choices] == texts)
# the samples run at once, batched in the engine's steps: each is still the
# request alone with seed + i (and greedy, the greedy request alone), its
# logprobs included
for temp, seed in ((1.0, 7), (0, None)):
    kw = dict(model=NAME, prompt=P2, max_tokens=30, temperature=temp, logprobs=2)
    rn = client.completions.create(n=4, seed=seed, **kw)
    alone = [client.completions.create(seed=None if seed is None else seed + i,
                                       **kw).choices[0] for i in range(4)]
    diff = max(abs(a - b) for c, o in zip(rn.choices, alone)
               for a, b in zip(c.logprobs.token_logprobs, o.logprobs.token_logprobs))
    d.check(f"n=4 {'sampled' if temp else 'greedy'}: choice i is the request alone "
            f"(seed + i): text, tokens and logprobs (max diff {diff:.1e})",
            [(c.text, c.logprobs.tokens, c.finish_reason) for c in rn.choices] ==
            [(o.text, o.logprobs.tokens, o.finish_reason) for o in alone] and diff < 1e-4,
            f"{[c.text for c in rn.choices]} vs {[o.text for o in alone]}")
chunks = list(client.completions.create(model=NAME, prompt=P2, max_tokens=30,
                                        temperature=1.0, n=4, seed=7, stream=True))
streamed = ["".join(c.choices[0].text for c in chunks if c.choices and c.choices[0].index == i)
            for i in range(4)]
d.check("n=4 streamed: chunks carry the choice index, texts as not streamed",
        streamed == texts, f"{streamed} vs {texts}")
for bad in (0, 17, 2.5):
    try:
        client.completions.create(model=NAME, prompt=PROMPT, max_tokens=1, n=bad)
        d.check(f"n={bad} refused", False, "accepted")
    except openai.BadRequestError as e:
        d.check(f"n={bad} refused with 400", "'n'" in str(e), str(e))
try:
    client.completions.create(model=NAME, prompt=PROMPT, max_tokens=1, best_of=2)
    d.check("best_of=2 refused", False, "accepted")
except openai.BadRequestError as e:
    d.check("best_of=2 refused with 400", "best_of" in str(e), str(e))

# ---- prompt logprobs ------------------------------------------------------------
# longer than the rows a step has for them (SCHED_PROMPT_LP_ROWS): several steps
LONG = [1] + hftok.encode(WANT[:330], add_special_tokens=False)
lref = ref_logprobs(LONG)
TOL = 1e-4     # F32 KV cache: logits_transformers.py sees 2e-5


def close(a, b):
    return a is not None and abs(a - b) <= TOL


r = client.completions.create(model=NAME, prompt=LONG, max_tokens=0, echo=True, logprobs=5)
c = r.choices[0]
lp = c.logprobs
want = [None] + [lref[i - 1][LONG[i]].item() for i in range(1, len(LONG))]
d.check(f"echo+logprobs, max_tokens 0: one entry per prompt token ({len(LONG)}), the first null",
        lp is not None and len(lp.tokens) == len(LONG) and lp.token_logprobs[0] is None and
        lp.top_logprobs[0] is None and c.text == hftok.decode(LONG, skip_special_tokens=True),
        f"{len(lp.tokens) if lp else None} {c.text[:40]!r}")
bad = [i for i in range(1, len(LONG)) if not close(lp.token_logprobs[i], want[i])]
d.check("echo+logprobs: the prompt tokens' logprobs are transformers' log_softmax",
        not bad, f"positions {bad[:5]}: {[(lp.token_logprobs[i], want[i]) for i in bad[:3]]}")
bad = [i for i in range(1, len(LONG))
       if not all(close(a, b) for a, b in zip(sorted(lp.top_logprobs[i].values(), reverse=True),
                                               torch.topk(lref[i - 1], 5).values.tolist()))
       or len(lp.top_logprobs[i]) < 4]
d.check("echo+logprobs: top_logprobs are transformers' 5 most likely", not bad,
        f"positions {bad[:5]}")
d.check("echo+logprobs: usage counts no completion tokens",
        r.usage.prompt_tokens == len(LONG) and r.usage.completion_tokens == 0 and
        c.finish_reason == "length", str(r.usage))
r = client.completions.create(model=NAME, prompt=PROMPT, max_tokens=3, temperature=0, echo=True,
                              logprobs=1)
lp = r.choices[0].logprobs
d.check("echo+logprobs with generation: prompt entries, then the generated ones",
        len(lp.tokens) == len(PROMPT) + 3 and lp.token_logprobs[0] is None and
        close(lp.token_logprobs[len(PROMPT)], ref[-1][top1].item()),
        f"{lp.tokens} {lp.token_logprobs}")


def check_prompt_lps(name, plps, ids, refl, k):
    ok = plps is not None and len(plps) == len(ids) and plps[0] is None
    why = f"{len(plps) if plps else plps} entries for {len(ids)} tokens"
    for i in range(1, len(ids)) if ok else ():
        e, row = plps[i], refl[i - 1]
        mine = e.get(str(ids[i]))
        rank = int((row >= row[ids[i]]).sum())
        topk = torch.topk(row, k)
        keys = {str(t) for t in topk.indices.tolist()} | {str(ids[i])}
        if (mine is None or not close(mine["logprob"], row[ids[i]].item()) or
                abs(mine["rank"] - rank) > 1 or not isinstance(mine["decoded_token"], str) or
                not set(e) <= keys or len(e) < k or
                not all(close(v["logprob"], row[int(t)].item()) for t, v in e.items())):
            ok, why = False, f"position {i}: {e} vs rank {rank}, top {keys}"
            break
    d.check(name, ok, why)


r = client.completions.create(model=NAME, prompt=LONG, max_tokens=2, temperature=0,
                              extra_body={"prompt_logprobs": 3})
check_prompt_lps("completions prompt_logprobs=3 (SDK extra_body) equal transformers'",
                 getattr(r.choices[0], "prompt_logprobs", None), LONG, lref, 3)
r2 = client.completions.create(model=NAME, prompt=LONG, max_tokens=2, temperature=0,
                               extra_body={"prompt_logprobs": 3})
check_prompt_lps("prompt_logprobs again (the prompt's blocks are cached: not reused for them)",
                 getattr(r2.choices[0], "prompt_logprobs", None), LONG, lref, 3)
d.check("prompt_logprobs do not change the output", r2.choices[0].text == r.choices[0].text)
try:
    client.completions.create(model=NAME, prompt=PROMPT, max_tokens=2, stream=True,
                              extra_body={"prompt_logprobs": 1})
    d.check("prompt_logprobs with stream refused", False, "accepted")
except openai.BadRequestError as e:
    d.check("prompt_logprobs with stream refused with 400", "prompt_logprobs" in str(e), str(e))
for bad in (-1, 21, "x"):
    try:
        client.completions.create(model=NAME, prompt=PROMPT, max_tokens=2,
                                  extra_body={"prompt_logprobs": bad})
        d.check(f"prompt_logprobs={bad!r} refused", False, "accepted")
    except openai.BadRequestError as e:
        d.check(f"prompt_logprobs={bad!r} refused with 400", "prompt_logprobs" in str(e), str(e))

# ---- chat: a copy of the model with a chat template ------------------------------
chat_dir = os.path.join(d.tmp, "chat-model")
os.makedirs(chat_dir)
for f in os.listdir(d.MODEL):
    os.symlink(os.path.join(d.MODEL, f), os.path.join(chat_dir, f))
with open(os.path.join(d.MODEL, "tokenizer_config.json")) as fh:
    tc = json.load(fh)
tc["chat_template"] = ("{{ bos_token }}{% for m in messages %}{{ m['content'] }}\n{% endfor %}"
                       "{% if add_generation_prompt %}Once{% endif %}")
os.unlink(os.path.join(chat_dir, "tokenizer_config.json"))
with open(os.path.join(chat_dir, "tokenizer_config.json"), "w") as fh:
    json.dump(tc, fh)
d.Proc(["serve", "--model", chat_dir, "--served-model-name", "chat", "--system-port", "0",
        "--engine", "auto", "--threads", "1", "--kv-cache-dtype", "f32"],
       r"instance ([0-9a-f]{16})")
ok = d.wait_until(lambda: "chat" in [m.id for m in client.models.list().data])
d.check("a chat model registers", ok)
MSG = [{"role": "user", "content": "The little dog ran to the park"}]
r = client.chat.completions.create(model="chat", messages=MSG, max_tokens=4, temperature=0,
                                   n=2, extra_body={"prompt_logprobs": 2})
plps = (r.model_extra or {}).get("prompt_logprobs")
# the rendered prompt, tokenized by transformers' tokenizer
cids = [1] + hftok.encode("The little dog ran to the park\nOnce", add_special_tokens=False)
check_prompt_lps("chat prompt_logprobs (in the response, as vLLM's) equal transformers'",
                 plps, cids, ref_logprobs(cids), 2)
d.check("chat n=2 greedy: two identical choices",
        len(r.choices) == 2 and r.choices[0].message.content == r.choices[1].message.content
        and [c.index for c in r.choices] == [0, 1], str(r.choices))
ctop = torch.argsort(ref_logprobs(cids)[-1], descending=True).tolist()
r = client.chat.completions.create(model="chat", messages=MSG, max_tokens=1, temperature=0,
                                   logit_bias={str(ctop[0]): -100})
d.check("chat logit_bias bans the greedy token: transformers' runner-up",
        r.choices[0].message.content == piece(cids, ctop[1]),
        f"{r.choices[0].message.content!r} vs {piece(cids, ctop[1])!r}")

# ---- include_stop_str_in_output ----------------------------------------------
STOP = "big, red"
cut = WANT.index(STOP)
for stream in (False, True):
    for inc in (False, True):
        kw = dict(model=NAME, prompt="", max_tokens=100, temperature=0, stop=[STOP],
                  stream=stream, extra_body={"include_stop_str_in_output": inc})
        if stream:
            chunks = list(client.completions.create(**kw))
            text = "".join(c.choices[0].text for c in chunks if c.choices)
            fin = [c.choices[0].finish_reason for c in chunks if c.choices][-1]
        else:
            c = client.completions.create(**kw).choices[0]
            text, fin = c.text, c.finish_reason
        want = WANT[:cut + len(STOP)] if inc else WANT[:cut]
        d.check(f"stop with include_stop_str_in_output={inc} (stream={stream})",
                text == want and fin == "stop", f"{text!r} {fin}")

d.finish()
