"""frontend_apis - POST /v1/responses (OpenAI's Responses API) and POST
/v1/messages (Anthropic's Messages API), through the official SDKs
(openai's client.responses, anthropic's client.messages).

A "scripted" echo worker (a copy of the Qwen3-shaped model whose chat
template is the last message's content, its markup tokens special, as in
frontend_tools.py) answers with exactly the text the test sends: model
outputs in Qwen3's documented format (<think>, <tool_call>), whose items
and blocks (reasoning / thinking, text, function_call / tool_use) are
written here by hand.  The Qwen3-shaped model with its own template
(echo: the rendered conversation comes back) shows that tool round trips
reach the template in Qwen3's documented shape.  stories260K on the
builtin engine gives real text: the streamed events add up to the whole
answer, which equals /v1/chat/completions' for the same conversation.
Bad input is a 400 in each API's own error shape.  Structured output
(text.format, output_config.format) and forced tool calls (tool_choice
required / named / any / tool) on stories260K validate against their schemas.
"""
import json
import os
import shutil
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "pylib"))
import dynproc as d  # noqa: E402

import anthropic  # noqa: E402
import httpx  # noqa: E402
import jsonschema_rs  # noqa: E402
import openai  # noqa: E402

QWEN = os.path.join(os.path.dirname(d.MODEL), "qwen3-0.6b-shape")
if not os.path.isdir(QWEN):
    d.skip("frontend apis", f"no {QWEN}")
    d.finish()

mdir = os.path.join(d.tmp, "scripted")
os.mkdir(mdir)
shutil.copy(os.path.join(QWEN, "config.json"), mdir)
with open(os.path.join(QWEN, "tokenizer.json"), encoding="utf-8") as fh:
    tj = json.load(fh)
MARKUP = {"<tool_call>", "</tool_call>", "<think>", "</think>"}
for t in tj["added_tokens"]:
    if t["content"] in MARKUP:
        t["special"] = True
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
d.worker(["--threads", "1", "--kv-cache-dtype", "f32"], engine="auto")  # stories260K
KEY = "sk-apis-test"
fe = d.frontend(["--tool-call-parser", "hermes", "--reasoning-parser", "qwen3",
                 "--api-key", KEY])
oc = openai.OpenAI(base_url=f"{fe.url}/v1", api_key=KEY, max_retries=0, timeout=30)
ac = anthropic.Anthropic(base_url=fe.url, api_key=KEY, max_retries=0, timeout=30)
d.wait_until(lambda: {"scripted", "qwen3", "stories260K"} <= {m.id for m in oc.models.list().data},
             timeout=60)

TOOLS_R = [{"type": "function", "name": "get_weather", "description": "Current weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"},
                                                            "days": {"type": "integer"}},
                           "required": ["city"]}},
           {"type": "function", "name": "get_time",
            "parameters": {"type": "object", "properties": {}}}]
TOOLS_A = [{"name": t["name"], "description": t.get("description", ""),
            "input_schema": t["parameters"]} for t in TOOLS_R]

TWO = ("Let me check.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": "
       "{\"city\": \"Z\u00fcrich\", \"days\": 2}}\n</tool_call>\n<tool_call>\n"
       "{\"name\": \"get_time\", \"arguments\": {}}\n</tool_call>")
TWO_CALLS = [("get_weather", {"city": "Z\u00fcrich", "days": 2}), ("get_time", {})]
THINK = "<think>Plan.</think>\n\nHello <b>there</b>!"

# ---- Responses API ---------------------------------------------------------


def r_items(resp):
    """A response's output items, without ids: (type, content)."""
    out = []
    for it in resp.output:
        if it.type == "message":
            d.check("message item: role assistant, output_text parts",
                    it.role == "assistant" and all(p.type == "output_text" for p in it.content),
                    str(it))
            out.append(("message", "".join(p.text for p in it.content)))
        elif it.type == "reasoning":
            out.append(("reasoning", "".join(p.text for p in it.content or [])))
        elif it.type == "function_call":
            out.append(("function_call", it.name, json.loads(it.arguments)))
        else:
            out.append((it.type,))
    return out


def r_stream(**kw):
    """The stream's events accumulated by hand, its final response, and
    the first fault found in its shape (or None)."""
    items, order, bad, final, seq = {}, [], None, None, 0
    for ev in oc.responses.create(stream=True, **kw):
        order.append(ev.type)
        if ev.sequence_number != seq:
            bad = bad or f"sequence_number {ev.sequence_number}, want {seq}"
        seq += 1
        if ev.type == "response.output_item.added":
            it = ev.item
            items[ev.output_index] = [it.type, "", it.name if it.type == "function_call" else None]
        elif ev.type in ("response.output_text.delta", "response.reasoning_text.delta",
                         "response.function_call_arguments.delta"):
            items[ev.output_index][1] += ev.delta
        elif ev.type == "response.output_text.done":
            if items[ev.output_index][1] != ev.text:
                bad = bad or "output_text.done's text is not the deltas'"
        elif ev.type in ("response.completed", "response.incomplete"):
            final = ev.response
    got = []
    for i in sorted(items):
        t, s, name = items[i]
        got.append((t, name, json.loads(s)) if t == "function_call" else (t, s))
    if order[:2] != ["response.created", "response.in_progress"]:
        bad = bad or f"begins with {order[:2]}"
    return got, final, order, bad


def r_case(label, text, want, status="completed", **kw):
    kw.setdefault("model", "scripted")
    r = oc.responses.create(input=text, **kw)
    d.check(f"responses {label}: output items", r_items(r) == want and r.status == status,
            f"got {r_items(r)} {r.status}, want {want} {status}")
    d.check(f"responses {label}: id, object, usage",
            r.id.startswith("resp_") and r.object == "response" and
            r.usage.output_tokens > 0 and r.usage.total_tokens ==
            r.usage.input_tokens + r.usage.output_tokens, str(r.usage))
    got, final, order, bad = r_stream(input=text, **kw)
    d.check(f"responses {label}: streamed events add up to the response",
            got == want and not bad and final is not None and r_items(final) == want and
            final.status == status, f"got {got} {bad}; {order}")
    if status == "completed":  # the helper wants response.completed (not .incomplete)
        with oc.responses.stream(input=text, **kw) as s:
            for _ in s:
                pass
            fr = s.get_final_response()
        d.check(f"responses {label}: the SDK's stream helper", r_items(fr) == want, str(fr))
    return r, order


r, order = r_case("reasoning and text", THINK,
                  [("reasoning", "Plan."), ("message", "\n\nHello <b>there</b>!")])
want_order = ["response.created", "response.in_progress",
              "response.output_item.added", "response.content_part.added",
              "response.reasoning_text.delta", "response.reasoning_text.done",
              "response.content_part.done", "response.output_item.done",
              "response.output_item.added", "response.content_part.added",
              "response.output_text.delta", "response.output_text.done",
              "response.content_part.done", "response.output_item.done",
              "response.completed"]
dedup = [e for i, e in enumerate(order) if not (i and e == order[i - 1] and e.endswith("delta"))]
d.check("responses: the documented event sequence", dedup == want_order, str(order))
d.check("responses: output_text is the message's text",
        r.output_text == "\n\nHello <b>there</b>!", repr(r.output_text))
r, order = r_case("text and two calls", TWO,
                  [("message", "Let me check."),
                   ("function_call", "get_weather", {"city": "Z\u00fcrich", "days": 2}),
                   ("function_call", "get_time", {})], tools=TOOLS_R,
                  instructions="ignored by this template")
d.check("responses: function_call items have call_id call_... and fc_ ids",
        all(it.call_id.startswith("call_") and it.id.startswith("fc_")
            for it in r.output if it.type == "function_call") and
        "response.function_call_arguments.done" in order, str(r.output))
r_case("tool_choice none: calls stay text", TWO, [("message", TWO)], tools=TOOLS_R,
       tool_choice="none")
r_case("max_output_tokens: incomplete", "one two three four five six seven",
       [("message", "one two three")], status="incomplete", max_output_tokens=3)
r = oc.responses.create(model="scripted", input="one two three four", max_output_tokens=2)
d.check("responses: incomplete_details names max_output_tokens",
        r.incomplete_details and r.incomplete_details.reason == "max_output_tokens", str(r))

# a tool round trip reaches the model's own template (Qwen3's documented
# shapes of calls and results)
rt = oc.responses.create(model="qwen3", instructions="Be brief.", input=[
    {"role": "user", "content": "Weather in Z\u00fcrich?"},
    {"type": "function_call", "call_id": "call_1", "name": "get_weather",
     "arguments": "{\"city\": \"Z\u00fcrich\"}"},
    {"type": "function_call_output", "call_id": "call_1", "output": "{\"temp\": 21}"},
    {"role": "developer", "content": [{"type": "input_text", "text": "Answer in words."}]}])
echoed = "".join(t[1] for t in r_items(rt) if t[0] in ("message", "reasoning"))
for frag in ["system\nBe brief.", "user\nWeather in Z\u00fcrich?",
             "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Z\u00fcrich\"}}"
             "\n</tool_call>", "<tool_response>\n{\"temp\": 21}\n</tool_response>",
             "Answer in words."]:
    d.check(f"responses round trip: the prompt has {frag[:30]!r}", frag in echoed, echoed)


def r_bad(label, param_word, **kw):
    kw.setdefault("model", "scripted")
    kw.setdefault("input", "hi")
    try:
        oc.responses.create(**kw)
        d.check(f"responses bad input: {label}", False, "no error")
    except openai.BadRequestError as e:
        err = e.body if isinstance(e.body, dict) else {}
        d.check(f"responses bad input: {label}: 400 naming {param_word}",
                e.status_code == 400 and param_word in (err.get("message", "") +
                                                        str(err.get("param"))), str(e.body))


r_bad("previous_response_id", "previous_response_id", previous_response_id="resp_x")
r_bad("a tool role", "role", input=[{"role": "tool", "content": "x"}])
r_bad("an image part", "input_image", input=[{"role": "user", "content": [
    {"type": "input_image", "image_url": "http://x/y.png"}]}])
r_bad("a web_search tool", "function", tools=[{"type": "web_search"}])
r_bad("empty input", "input", input=[])
r_bad("top_logprobs (not served yet)", "top_logprobs", top_logprobs=2)
r_bad("include logprobs (not served yet)", "include", include=["message.output_text.logprobs"])
r_bad("a function_call without call_id", "call_id",
      input=[{"type": "function_call", "name": "f", "arguments": "{}"}])

# ---- Messages API ----------------------------------------------------------


def a_blocks(m):
    out = []
    for b in m.content:
        if b.type == "text":
            out.append(("text", b.text))
        elif b.type == "thinking":
            out.append(("thinking", b.thinking))
        elif b.type == "tool_use":
            out.append(("tool_use", b.name, b.input))
        else:
            out.append((b.type,))
    return out


def a_raw_stream(**kw):
    """The raw events accumulated by hand, and the first fault found."""
    blocks, types, bad, stop = {}, [], None, None
    with ac.messages.create(stream=True, **kw) as s:
        for ev in s:
            types.append(ev.type)
            if ev.type == "content_block_start":
                b = ev.content_block
                if ev.index in blocks:
                    bad = bad or f"block {ev.index} started twice"
                blocks[ev.index] = [b.type, "", getattr(b, "name", None)]
            elif ev.type == "content_block_delta":
                dl = ev.delta
                blocks[ev.index][1] += {"text_delta": lambda: dl.text,
                                        "thinking_delta": lambda: dl.thinking,
                                        "input_json_delta": lambda: dl.partial_json}[dl.type]()
            elif ev.type == "message_delta":
                stop = (ev.delta.stop_reason, ev.delta.stop_sequence)
    got = []
    for i in sorted(blocks):
        t, s, name = blocks[i]
        got.append(("tool_use", name, json.loads(s)) if t == "tool_use" else (t, s))
    if types[0] != "message_start" or types[-1] != "message_stop":
        bad = bad or f"events {types}"
    if types.count("content_block_start") != types.count("content_block_stop"):
        bad = bad or f"unbalanced blocks {types}"
    return got, stop, bad


def a_case(label, text, want, stop=("end_turn", None), **kw):
    kw.setdefault("model", "scripted")
    kw.setdefault("max_tokens", 200)
    msgs = [{"role": "user", "content": text}]
    m = ac.messages.create(messages=msgs, **kw)
    d.check(f"messages {label}: content blocks and stop_reason",
            a_blocks(m) == want and (m.stop_reason, m.stop_sequence) == stop,
            f"got {a_blocks(m)} {m.stop_reason} {m.stop_sequence}, want {want} {stop}")
    d.check(f"messages {label}: id msg_, type, role, usage",
            m.id.startswith("msg_") and m.type == "message" and m.role == "assistant" and
            m.usage.input_tokens > 0 and m.usage.output_tokens > 0, str(m))
    got, sstop, bad = a_raw_stream(messages=msgs, **kw)
    d.check(f"messages {label}: streamed events add up to the message",
            got == want and sstop == stop and not bad, f"got {got} {sstop} {bad}")
    with ac.messages.stream(messages=msgs, **kw) as s:
        for _ in s:
            pass
        fm = s.get_final_message()
    d.check(f"messages {label}: the SDK's stream helper",
            a_blocks(fm) == want and fm.stop_reason == stop[0], str(fm))
    return m


a_case("thinking and text", THINK, [("thinking", "Plan."), ("text", "\n\nHello <b>there</b>!")])
m = a_case("text and two tool_use blocks", TWO,
           [("text", "Let me check.")] + [("tool_use", n, a) for n, a in TWO_CALLS],
           stop=("tool_use", None), tools=TOOLS_A, system="ignored by this template")
d.check("messages: tool_use ids are toolu_ and distinct",
        len({b.id for b in m.content if b.type == "tool_use"}) == 2 and
        all(b.id.startswith("toolu_") for b in m.content if b.type == "tool_use"), str(m))
a_case("stop_sequences", "a STOP b", [("text", "a ")], stop=("stop_sequence", "STOP"),
       stop_sequences=["STOP"])
a_case("max_tokens", "one two three four five six", [("text", "one two three")],
       stop=("max_tokens", None), max_tokens=3)
a_case("tool_choice none: calls stay text", TWO, [("text", TWO)], tools=TOOLS_A,
       tool_choice={"type": "none"})

m = ac.messages.create(model="qwen3", max_tokens=400, system=[{"type": "text",
                                                                 "text": "Be brief."}],
                       messages=[
    {"role": "user", "content": "Weather in Z\u00fcrich?"},
    {"role": "assistant", "content": [
        {"type": "text", "text": "Checking."},
        {"type": "tool_use", "id": "toolu_1", "name": "get_weather",
         "input": {"city": "Z\u00fcrich"}}]},
    {"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "toolu_1",
         "content": [{"type": "text", "text": "{\"temp\": 21}"}]},
        {"type": "text", "text": "Answer in words."}]}])
echoed = "".join(b[1] for b in a_blocks(m) if b[0] in ("text", "thinking"))
for frag in ["system\nBe brief.", "user\nWeather in Z\u00fcrich?", "Checking.",
             "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Z\u00fcrich\"}}"
             "\n</tool_call>", "<tool_response>\n{\"temp\": 21}\n</tool_response>",
             "Answer in words."]:
    d.check(f"messages round trip: the prompt has {frag[:30]!r}", frag in echoed, echoed)


def a_bad(label, body, status=400, etype="invalid_request_error", word=None, key=KEY,
          path="/v1/messages"):
    h = {"content-type": "application/json", "anthropic-version": "2023-06-01"}
    if key:
        h["x-api-key"] = key
    r = httpx.post(f"{fe.url}{path}", content=body if isinstance(body, bytes)
                   else json.dumps(body), headers=h, timeout=30)
    try:
        j = r.json()
    except ValueError:
        j = {}
    ok = (r.status_code == status and j.get("type") == "error" and
          j.get("error", {}).get("type") == etype and
          (word is None or word in j["error"].get("message", "")))
    d.check(f"messages bad input: {label}: {status} {etype}", ok, f"{r.status_code} {r.text}")


GOOD = {"model": "scripted", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}
a_bad("missing max_tokens", {k: v for k, v in GOOD.items() if k != "max_tokens"},
      word="max_tokens")
a_bad("a system role in messages", dict(GOOD, messages=[{"role": "system", "content": "x"}]),
      word="role")
a_bad("an image block", dict(GOOD, messages=[{"role": "user", "content": [
    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": ""}}]}]),
      word="image")
a_bad("tool_use from the user", dict(GOOD, messages=[{"role": "user", "content": [
    {"type": "tool_use", "id": "t", "name": "f", "input": {}}]}]), word="tool_result")
a_bad("a text block without text", dict(GOOD, messages=[{"role": "user", "content": [
    {"type": "text"}]}]), word="text")
a_bad("a bad tool_choice", dict(GOOD, tool_choice={"type": "sometimes"}), word="tool_choice")
a_bad("not JSON", b"{not json")
a_bad("an unknown model", dict(GOOD, model="nope"), status=404, etype="not_found_error")
a_bad("no API key", GOOD, status=401, etype="authentication_error", key=None)
# max_tokens is a bound: past the context it is not refused (chat's is)
m = ac.messages.create(model="scripted", max_tokens=10**8, messages=[{"role": "user",
                                                                      "content": "bound"}])
d.check("messages: max_tokens past the context length is a bound",
        a_blocks(m) == [("text", "bound")] and m.stop_reason == "end_turn", str(m))
# count_tokens: the prompt's tokens (the scripted template is the text
# itself: Hugging Face's tokenizer counts them), as message usage has them
from tokenizers import Tokenizer  # noqa: E402
TEXT = "Count these tokens, Z\u00fcrich!"
n_hf = len(Tokenizer.from_file(os.path.join(QWEN, "tokenizer.json")).encode(
    TEXT, add_special_tokens=False).ids)
ct = ac.messages.count_tokens(model="scripted", messages=[{"role": "user", "content": TEXT}])
m = ac.messages.create(model="scripted", max_tokens=5, messages=[{"role": "user",
                                                                  "content": TEXT}])
d.check("messages count_tokens: the prompt's tokens",
        ct.input_tokens == n_hf == m.usage.input_tokens, f"{ct} {n_hf} {m.usage}")
a_bad("count_tokens without messages", {"model": "scripted"}, word="messages",
      path="/v1/messages/count_tokens")

# the raw stream has Anthropic's event lines (the SDK hides ping)
with httpx.stream("POST", f"{fe.url}/v1/messages", json=dict(GOOD, stream=True), timeout=30,
                  headers={"x-api-key": KEY}) as s:
    names = [ln[7:] for ln in s.iter_lines() if ln.startswith("event: ")]
d.check("messages raw stream: message_start, ping, blocks, message_delta, message_stop",
        names[:2] == ["message_start", "ping"] and names[2] == "content_block_start" and
        names[-3:] == ["content_block_stop", "message_delta", "message_stop"], str(names))
try:
    ac.messages.create(model="scripted", max_tokens=0, messages=[{"role": "user",
                                                                   "content": "hi"}])
    d.check("messages: max_tokens 0 refused through the SDK", False, "no error")
except anthropic.BadRequestError as e:
    d.check("messages: max_tokens 0 refused through the SDK",
            e.body["error"]["type"] == "invalid_request_error", str(e.body))

# ---- real text: stories260K on the builtin engine -------------------------

CONV = [{"role": "user", "content": "Once upon a time"}]
chat = oc.chat.completions.create(model="stories260K", messages=CONV, max_tokens=24,
                                  temperature=0)
ref = chat.choices[0].message.content
r = oc.responses.create(model="stories260K", input="Once upon a time", max_output_tokens=24,
                        temperature=0)
d.check("stories260K: the Responses API's text is chat's",
        r.output_text == ref and len(ref) > 10 and
        r.usage.input_tokens == chat.usage.prompt_tokens and
        r.usage.output_tokens == chat.usage.completion_tokens, f"{r.output_text!r} {ref!r}")
got, final, _, bad = r_stream(model="stories260K", input="Once upon a time",
                              max_output_tokens=24, temperature=0)
d.check("stories260K: streamed Responses deltas equal the whole text",
        got == [("message", ref)] and not bad, f"{got} {bad}")
# (this SDK has no temperature argument: the API's field, as extra_body)
GREEDY = {"temperature": 0}
m = ac.messages.create(model="stories260K", messages=CONV, max_tokens=24, extra_body=GREEDY)
d.check("stories260K: the Messages API's text is chat's",
        a_blocks(m) == [("text", ref)] and m.usage.output_tokens ==
        chat.usage.completion_tokens, f"{a_blocks(m)} {ref!r}")
with ac.messages.stream(model="stories260K", messages=CONV, max_tokens=24,
                        extra_body=GREEDY) as s:
    text = "".join(s.text_stream)
d.check("stories260K: the Messages text_stream equals the whole text", text == ref,
        f"{text!r} {ref!r}")

# ---- constrained output through both APIs (stories260K) ----------------------
# text.format / output_config.format become chat's response_format and
# tool_choice required / named / any / tool chat's constrained calls: the
# answers validate against their schemas (jsonschema_rs, not dyn's grammar)
# and come back as the APIs' call items / blocks, not as text.

SCHEMA = {"type": "object", "properties": {"unit": {"enum": ["c", "f"]},
                                           "ok": {"type": "boolean"}},
          "required": ["unit", "ok"]}
TOOLS_B = [{"type": "function", "name": "set_unit", "parameters": SCHEMA},
           {"type": "function", "name": "get_hour", "parameters": {
               "type": "object", "properties": {"tz": {"type": "integer", "minimum": -12,
                                                       "maximum": 12}}, "required": ["tz"]}}]
PARAMS = {t["name"]: t["parameters"] for t in TOOLS_B}


def valid(schema, v):
    return jsonschema_rs.validator_for(schema).is_valid(v)


def one_call(got, name=None):
    """got (r_items / a_blocks shapes) is one call of a tool, its arguments valid."""
    return (len(got) == 1 and got[0][0] in ("function_call", "tool_use") and
            got[0][1] in PARAMS and (name is None or got[0][1] == name) and
            valid(PARAMS[got[0][1]], got[0][2]))


r = oc.responses.create(model="stories260K", input="Units?", max_output_tokens=200,
                        temperature=0, text={"format": {"type": "json_schema", "name": "t",
                                                        "schema": SCHEMA, "strict": True}})
try:
    ok = r.status == "completed" and valid(SCHEMA, json.loads(r.output_text))
except ValueError:
    ok = False
d.check("responses text.format json_schema: the text validates", ok, r.output_text)
r = oc.responses.create(model="stories260K", input="Hour?", max_output_tokens=200,
                        temperature=0, tools=TOOLS_B,
                        tool_choice={"type": "function", "name": "get_hour"})
d.check("responses tool_choice named: one function_call item, valid arguments",
        one_call(r_items(r), "get_hour") and r.status == "completed", str(r.output))
got, final, _, bad = r_stream(model="stories260K", input="Units?", max_output_tokens=200,
                              temperature=0.8, tools=TOOLS_B, tool_choice="required",
                              parallel_tool_calls=False)
d.check("responses tool_choice required (streamed, parallel_tool_calls false): one call",
        one_call(got) and not bad and final.parallel_tool_calls is False, f"{got} {bad}")
m = ac.messages.create(model="stories260K", max_tokens=200, extra_body=GREEDY,
                       messages=[{"role": "user", "content": "Units?"}],
                       output_config={"format": {"type": "json_schema", "schema": SCHEMA}})
try:
    ok = a_blocks(m)[0][0] == "text" and valid(SCHEMA, json.loads(a_blocks(m)[0][1]))
except (ValueError, IndexError):
    ok = False
d.check("messages output_config.format: the text validates", ok, str(m.content))
TOOLS_BA = [{"name": t["name"], "input_schema": t["parameters"]} for t in TOOLS_B]
m = ac.messages.create(model="stories260K", max_tokens=200, extra_body=GREEDY,
                       messages=[{"role": "user", "content": "Hour?"}], tools=TOOLS_BA,
                       tool_choice={"type": "tool", "name": "set_unit"})
d.check("messages tool_choice tool: one tool_use block, valid input, stop_reason tool_use",
        one_call(a_blocks(m), "set_unit") and m.stop_reason == "tool_use", str(m))
m = ac.messages.create(model="stories260K", max_tokens=200, extra_body={"temperature": 0.8},
                       messages=[{"role": "user", "content": "Hour?"}], tools=TOOLS_BA,
                       tool_choice={"type": "any", "disable_parallel_tool_use": True})
d.check("messages tool_choice any: one tool_use block, valid input, stop_reason tool_use",
        one_call(a_blocks(m)) and m.stop_reason == "tool_use", str(m))

# ---- metrics and the OpenAPI document ----------------------------------------

met = httpx.get(f"{fe.url}/metrics", timeout=10).text
for ep in ("responses", "messages", "messages_count_tokens"):
    d.check(f"/metrics counts {ep}",
            f'endpoint="{ep}",status="200"' in met and f'endpoint="{ep}",status="400"' in met,
            "\n".join(ln for ln in met.splitlines() if "requests_total" in ln))
doc = httpx.get(f"{fe.url}/openapi.json", timeout=10).json()
d.check("/openapi.json has both endpoints",
        {"/v1/responses", "/v1/messages", "/v1/messages/count_tokens"} <= set(doc["paths"]),
        str(list(doc["paths"])))

d.finish()
