"""frontend_tools - tool calls and reasoning parsed out of chat output
(--tool-call-parser, --reasoning-parser), through the official OpenAI SDK.

A "scripted" echo worker serves a copy of the Qwen3-shaped model whose
chat template is just the last message's content (and whose markup
tokens are special), so the model's output is exactly the text the test
sends: model outputs written in each
format's documented shape.  The expected tool calls, content and
reasoning are written by hand.  Each case is asked whole and streamed;
the streamed deltas (accumulated here and by the SDK's own stream
helper) must equal the whole answer, and the stream must have OpenAI's
shape (a call's first delta: index, id, type, name, arguments "").
"""
import json
import os
import shutil
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "pylib"))
import dynproc as d  # noqa: E402

import openai  # noqa: E402

QWEN = os.path.join(os.path.dirname(d.MODEL), "qwen3-0.6b-shape")
if not os.path.isdir(QWEN):
    d.skip("frontend tools", f"no {QWEN}")
    d.finish()

mdir = os.path.join(d.tmp, "scripted")
os.mkdir(mdir)
shutil.copy(os.path.join(QWEN, "config.json"), mdir)
# Its markup tokens marked special, as other models' are ([TOOL_CALLS],
# <|channel|>, ...): a parser must still see them, while the other
# special tokens (<|im_end|>) stay out of the text.
with open(os.path.join(QWEN, "tokenizer.json"), encoding="utf-8") as fh:
    tj = json.load(fh)
MARKUP = {"<tool_call>", "</tool_call>", "<think>", "</think>"}
for t in tj["added_tokens"]:
    if t["content"] in MARKUP:
        t["special"] = True
assert sum(t["content"] in MARKUP and t["special"] for t in tj["added_tokens"]) == 4
with open(os.path.join(mdir, "tokenizer.json"), "w", encoding="utf-8") as fh:
    json.dump(tj, fh, ensure_ascii=False)
with open(os.path.join(QWEN, "tokenizer_config.json"), encoding="utf-8") as fh:
    qcfg = json.load(fh)
with open(os.path.join(mdir, "tokenizer_config.json"), "w", encoding="utf-8") as fh:
    json.dump(dict(qcfg, chat_template="{{ messages[-1]['content'] }}"), fh)

ECHO = {"DYN_TOKEN_ECHO_DELAY_MS": "0"}
d.Proc(["serve", "--model", mdir, "--served-model-name", "scripted", "--engine", "echo",
        "--system-port", "0"], r"instance ([0-9a-f]{16}) .* system port (\d+)", env=ECHO)
d.Proc(["serve", "--model", QWEN, "--served-model-name", "qwen3", "--engine", "echo",
        "--system-port", "0"], r"instance ([0-9a-f]{16}) .* system port (\d+)", env=ECHO)


def client_of(fe):
    c = openai.OpenAI(base_url=f"{fe.url}/v1", api_key="unused", max_retries=0, timeout=30)
    d.wait_until(lambda: {"scripted", "qwen3"} <= {m.id for m in c.models.list().data})
    return c


TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "description": "Current weather",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"},
                                                    "days": {"type": "integer"}},
                   "required": ["city"]}}},
         {"type": "function", "function": {"name": "get_time", "parameters": {
             "type": "object", "properties": {}}}}]


def whole(client, text, model="scripted", **kw):
    r = client.chat.completions.create(model=model, messages=[{"role": "user",
                                                                "content": text}], **kw)
    m = r.choices[0].message
    calls = [(c.function.name, json.loads(c.function.arguments)) for c in m.tool_calls or []]
    ids = [c.id for c in m.tool_calls or []]
    return dict(content=m.content, reasoning=getattr(m, "reasoning_content", None),
                alias=getattr(m, "reasoning", None), calls=calls,
                finish=r.choices[0].finish_reason), ids


def streamed(client, text, model="scripted", **kw):
    """The stream accumulated by hand, and whether every chunk had
    OpenAI's shape (else the reason)."""
    content, reasoning, calls, finish, bad = [], [], {}, None, None
    for ch in client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": text}], stream=True, **kw):
        if not ch.choices:
            continue
        c = ch.choices[0]
        dl = c.delta
        if c.finish_reason:
            finish = c.finish_reason
        if dl.content:
            content.append(dl.content)
        if getattr(dl, "reasoning_content", None):
            reasoning.append(dl.reasoning_content)
            if getattr(dl, "reasoning", None) != dl.reasoning_content:
                bad = "a reasoning delta without the same 'reasoning' alias"
        for tc in dl.tool_calls or []:
            if tc.index not in calls:
                if not (tc.id and tc.id.startswith("call_") and tc.type == "function" and
                        tc.function.name and tc.function.arguments == ""):
                    bad = f"a call's first delta is not index/id/type/name/'': {tc}"
                calls[tc.index] = [tc.function.name, ""]
            elif tc.id or tc.function.name:
                bad = f"a later delta repeats the id or name: {tc}"
            else:
                calls[tc.index][1] += tc.function.arguments or ""
    got = dict(content="".join(content) if content else None,
               reasoning="".join(reasoning) if reasoning else None,
               calls=[(n, json.loads(a)) for n, a in (calls[i] for i in sorted(calls))],
               finish=finish)
    return got, bad


def sdk_stream(client, text, **kw):
    """The SDK's own accumulation of the stream (its stream helper)."""
    helper = getattr(client.chat.completions, "stream", None) or \
        client.beta.chat.completions.stream
    with helper(model="scripted", messages=[{"role": "user", "content": text}], **kw) as s:
        for _ in s:
            pass
        r = s.get_final_completion()
    m = r.choices[0].message
    return [(c.function.name, json.loads(c.function.arguments)) for c in m.tool_calls or []]


def case(client, label, text, want, model="scripted", sdk=True, **kw):
    got, ids = whole(client, text, model, **kw)
    w = dict(want)
    w.setdefault("content", None)
    w.setdefault("reasoning", None)
    w.setdefault("calls", [])
    w.setdefault("finish", "tool_calls" if w["calls"] else "stop")
    alias = got.pop("alias")
    d.check(f"{label}: message", got == w, f"got {got}, want {w}")
    d.check(f"{label}: ids call_ and distinct, reasoning alias",
            all(i.startswith("call_") and len(i) > 5 for i in ids) and
            len(set(ids)) == len(ids) and alias == got["reasoning"], f"{ids} {alias!r}")
    s, bad = streamed(client, text, model, **kw)
    # a streamed message without text has no content deltas: None
    sw = dict(w, content=w["content"] or None)
    d.check(f"{label}: streamed deltas add up to the message", s == sw and not bad,
            f"got {s}, want {sw}; {bad}")
    if sdk and "tools" in kw:
        acc = sdk_stream(client, text, **kw)
        d.check(f"{label}: the SDK's accumulated tool_calls", acc == w["calls"],
                f"got {acc}, want {w['calls']}")


fa = d.frontend(["--tool-call-parser", "hermes", "--reasoning-parser", "qwen3"])
ca = client_of(fa)
TWO = ("Let me check.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": "
       "{\"city\": \"Z\u00fcrich\", \"days\": 2}}\n</tool_call>\n<tool_call>\n"
       "{\"name\": \"get_time\", \"arguments\": {}}\n</tool_call>")
case(ca, "hermes: text and two calls", TWO,
     {"content": "Let me check.", "calls": [("get_weather", {"city": "Z\u00fcrich", "days": 2}),
                                             ("get_time", {})]}, tools=TOOLS)
case(ca, "qwen3 reasoning then a call",
     "<think>\nThe user wants weather.\n</think>\n\n<tool_call>\n{\"name\": \"get_weather\", "
     "\"arguments\": {\"city\": \"Bern\"}}\n</tool_call>",
     {"reasoning": "\nThe user wants weather.\n", "calls": [("get_weather", {"city": "Bern"})]},
     tools=TOOLS)
case(ca, "reasoning and text, no tools", "<think>Plan.</think>\n\nHello <b>there</b>!",
     {"reasoning": "Plan.", "content": "\n\nHello <b>there</b>!"})
BAD = ("Sure <tool_call>{\"name\": \"get_weather\", \"arguments\": {oops}}</tool_call> done")
case(ca, "malformed call: content", BAD, {"content": BAD}, tools=TOOLS)
# max_tokens cuts the call short: the text the tokens so far decode to
# (Hugging Face tokenizers, the reference) comes back as content
from tokenizers import Tokenizer  # noqa: E402
hf = Tokenizer.from_file(os.path.join(QWEN, "tokenizer.json"))
LONG = "Sure <tool_call>{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Oslo\"}}</tool_call>"
ids = hf.encode(LONG, add_special_tokens=False).ids
CUT = hf.decode(ids[:len(ids) - 4])
d.check("the cut falls inside the call", "<tool_call>" in CUT and len(CUT) < len(LONG), CUT)
case(ca, "call cut off by max_tokens: content", LONG, {"content": CUT, "finish": "length"},
     tools=TOOLS, max_tokens=len(ids) - 4, sdk=False)
case(ca, "tool_choice none: calls stay text", TWO, {"content": TWO}, tools=TOOLS,
     tool_choice="none")
case(ca, "no tools: calls stay text", TWO, {"content": TWO})
case(ca, "special tokens that are not markup are dropped", "Hi<|im_end|> there",
     {"content": "Hi there"})

# logprobs: every token's entry is sent, the calls' markup included (with
# the chunks that go out, the rest with the last one)
r = ca.chat.completions.create(model="scripted", messages=[{"role": "user", "content": TWO}],
                               tools=TOOLS, logprobs=True)
n_lp = len(r.choices[0].logprobs.content)
streamed_lp = 0
for ch in ca.chat.completions.create(model="scripted", messages=[{"role": "user",
                                                                   "content": TWO}],
                                     tools=TOOLS, logprobs=True, stream=True):
    if ch.choices and ch.choices[0].logprobs and ch.choices[0].logprobs.content:
        streamed_lp += len(ch.choices[0].logprobs.content)
d.check("logprobs with parsed calls: one entry per token, whole and streamed",
        n_lp == r.usage.completion_tokens == streamed_lp and
        "".join(e.token for e in r.choices[0].logprobs.content) == TWO,
        f"{n_lp} {streamed_lp} {r.usage.completion_tokens}")

# stop strings cut the raw text before it is parsed
case(ca, "stop string inside the reasoning", "<think>a STOP b</think>c",
     {"reasoning": "a "}, stop=["STOP"])

fb = d.frontend(["--tool-call-parser", "gpt_oss", "--reasoning-parser", "gpt_oss"])
cb = client_of(fb)
case(cb, "gpt-oss harmony: analysis, then a call",
     "<|channel|>analysis<|message|>Need the weather.<|end|><|start|>assistant"
     "<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>"
     "{\"city\":\"Lima\"}<|call|>",
     {"reasoning": "Need the weather.", "calls": [("get_weather", {"city": "Lima"})]},
     tools=TOOLS)
case(cb, "gpt-oss harmony: analysis, then the final answer",
     "<|channel|>analysis<|message|>Greet.<|end|><|start|>assistant<|channel|>final"
     "<|message|>Hello!<|return|>", {"reasoning": "Greet.", "content": "Hello!"})

# auto: the Qwen3-shaped model's own template (hermes, <think>).  Its echo
# worker answers with the whole rendered conversation, whose assistant
# turn holds one call (the template's example in the tools prompt is not
# valid JSON, so it stays text).
fc = d.frontend(["--tool-call-parser", "auto", "--reasoning-parser", "auto"])
cc = client_of(fc)
msgs = [{"role": "user", "content": "Weather in Z\u00fcrich?"},
        {"role": "assistant", "content": "", "tool_calls": [{
            "id": "call_1", "type": "function",
            "function": {"name": "get_weather", "arguments": "{\"city\": \"Z\u00fcrich\"}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "{\"temp\": 21}"},
        {"role": "user", "content": "Thanks"}]
r = cc.chat.completions.create(model="qwen3", messages=msgs, tools=TOOLS,
                               extra_body={"chat_template_kwargs": {"enable_thinking": False}})
m = r.choices[0].message
got = [(c.function.name, json.loads(c.function.arguments)) for c in m.tool_calls or []]
d.check("auto (Qwen3's template): hermes calls parsed",
        got == [("get_weather", {"city": "Z\u00fcrich"})] and
        r.choices[0].finish_reason == "tool_calls" and "<tool_call>\n{\"name\": \"get_weather\""
        not in (m.content or ""), f"{got} {r.choices[0].finish_reason} {m.content!r}")
r = ca.chat.completions.create(model="qwen3", messages=msgs, tools=TOOLS)
d.check("a model without a parser of its own under hermes: same calls",
        [(c.function.name, json.loads(c.function.arguments))
         for c in r.choices[0].message.tool_calls or []] == got, str(r.choices[0].message))

# The worker's card names the parsers; a frontend without its own uses them
# for that model only.
d.Proc(["serve", "--model", mdir, "--served-model-name", "carded", "--engine", "echo",
        "--system-port", "0", "--tool-call-parser", "hermes", "--reasoning-parser", "qwen3"],
       r"instance ([0-9a-f]{16}) .* system port (\d+)", env=ECHO)
fd = d.frontend()
cd = client_of(fd)
d.wait_until(lambda: "carded" in {m.id for m in cd.models.list().data})
case(cd, "parsers from the worker's card", "<think>R</think><tool_call>{\"name\": \"get_time\", "
     "\"arguments\": {}}</tool_call>", {"reasoning": "R", "calls": [("get_time", {})]},
     model="carded", sdk=False, tools=TOOLS)
got, _ = whole(cd, TWO, tools=TOOLS)
# no parser: the special tokens are skipped as always
plain = TWO.replace("<tool_call>", "").replace("</tool_call>", "")
d.check("a model whose card names none: content, special tokens skipped",
        got["content"] == plain and not got["calls"], str(got))

# The worker's card names the parsers; a frontend without its own uses them
# for that model only.
d.Proc(["serve", "--model", mdir, "--served-model-name", "carded", "--engine", "echo",
        "--system-port", "0", "--tool-call-parser", "hermes", "--reasoning-parser", "qwen3"],
       r"instance ([0-9a-f]{16}) .* system port (\d+)", env=ECHO)
fd = d.frontend()
cd = client_of(fd)
d.wait_until(lambda: "carded" in {m.id for m in cd.models.list().data})
case(cd, "parsers from the worker's card", "<think>R</think><tool_call>{\"name\": \"get_time\", "
     "\"arguments\": {}}</tool_call>", {"reasoning": "R", "calls": [("get_time", {})]},
     model="carded", sdk=False, tools=TOOLS)
got, _ = whole(cd, TWO, tools=TOOLS)
# no parser: the special tokens are skipped as always
plain = TWO.replace("<tool_call>", "").replace("</tool_call>", "")
d.check("a model whose card names none: content, special tokens skipped",
        got["content"] == plain and not got["calls"], str(got))

d.finish()
