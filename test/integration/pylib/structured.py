"""structured - constrained decoding end to end, through the OpenAI SDK
(the body of test/integration/structured_output*.py: main(set) runs one
set of models, so that each program stays short).

Models whose output is garbage unless constrained: tiny Qwen3 and Llama 3
shapes with the real tokenizers (151,936 / 128,256 tokens) and random
weights (--load-format dummy), stories260K, and the mock engine (random
tokens).  For a suite of JSON schemas (objects, arrays, enums, patterns,
integer ranges, nested $refs, anyOf/oneOf), regexes, choices and GBNF
grammars, requests with several seeds and temperatures, many at once
(batched decoding), must each end with finish_reason "stop" and an output
that jsonschema_rs validates / Python's re.fullmatch matches / is one of
the choices / xgrammar's matcher accepts as a complete sentence of the
grammar (independent checkers).  Also: tool_choice required / named give
tool_calls whose arguments validate; bad specs are 400s naming the field;
a disaggregated prefill -> decode pair applies the constraint.
"""
import concurrent.futures as cf
import json
import os
import re
import shutil
import time

import dynproc as d  # noqa: E402

os.environ.setdefault("HF_HUB_OFFLINE", "1")
import jsonschema_rs  # noqa: E402
import openai  # noqa: E402

MODELS_DIR = os.path.join(d.TOP, "..", "shared", "models")

SCHEMAS = [
    {"type": "object", "properties": {
        "name": {"type": "string", "maxLength": 12},
        "age": {"type": "integer", "minimum": 0, "maximum": 120},
        "tags": {"type": "array", "items": {"enum": ["a", "b", "c"]}, "maxItems": 3},
        "active": {"type": "boolean"}},
     "required": ["name", "age"], "additionalProperties": False},
    {"type": "object", "properties": {
        "items": {"type": "array", "items": {"$ref": "#/$defs/item"}, "minItems": 1,
                  "maxItems": 3}},
     "required": ["items"], "additionalProperties": False,
     "$defs": {"item": {"type": "object", "properties": {
         "id": {"type": "integer", "minimum": 1, "maximum": 999},
         "kind": {"anyOf": [{"const": "widget"}, {"type": "null"}]}},
         "required": ["id", "kind"], "additionalProperties": False}}},
    {"enum": ["red", "green", {"x": [1, 2]}]},
    {"type": "object", "properties": {
        "code": {"type": "string", "pattern": "^[A-Z]{3}-[0-9]{2}$"},
        "qty": {"type": "integer", "exclusiveMinimum": 0, "maximum": 50}},
     "required": ["code", "qty"], "additionalProperties": False},
    {"oneOf": [{"type": "string", "maxLength": 5},
               {"type": "integer", "minimum": -5, "maximum": 5}]},
]
REGEXES = [r"\d{3}-\d{4}", r"(cat|dog|bird)s?( and (cat|dog|bird)s?){0,2}",
           r"[a-z]{1,8}@[a-z]{2,5}\.(com|org)"]
CHOICES = [["alpha", "beta", "gamma delta"]]
GRAMMARS = ['root ::= expr\nexpr ::= term ([+*-] term){0,3}\n'
            'term ::= [0-9]{1,3} | "(" expr ")"\n']
SEEDS = [(1, 0.3), (2, 1.0), (3, 1.5)]


def tiny_copy(shape, name):
    """A folder with shape's tokenizer and a tiny config of its family."""
    src = os.path.join(MODELS_DIR, shape)
    dst = os.path.join(d.tmp, name)
    os.makedirs(dst)
    c = json.load(open(os.path.join(src, "config.json")))
    c.update(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
             num_attention_heads=4, num_key_value_heads=2, head_dim=16,
             tie_word_embeddings=True, max_position_embeddings=4096)
    json.dump(c, open(os.path.join(dst, "config.json"), "w"))
    for f in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(os.path.join(src, f), dst)
    return dst


def worker(model, name, engine="builtin", extra=()):
    args = ["serve", "--model", model, "--served-model-name", name, "--engine", engine,
            "--system-port", "0", "--threads", "1"] + list(extra)
    if engine == "builtin" and model != d.MODEL:
        args += ["--load-format", "dummy"]
    return d.Proc(args, r"instance ([0-9a-f]{16}) .* system port (\d+)", timeout=60)


def in_grammar(text, g):
    """Is text a complete sentence of GBNF grammar g?  (xgrammar's matcher:
    an independent checker.)"""
    import xgrammar as xgr
    from transformers import AutoTokenizer
    global _xcomp, _xinfo
    if _xcomp is None:
        _xinfo = xgr.TokenizerInfo.from_huggingface(
            AutoTokenizer.from_pretrained(os.path.join(MODELS_DIR, "qwen3-0.6b-shape")))
        _xcomp = xgr.GrammarCompiler(_xinfo)
    m = xgr.GrammarMatcher(_xcomp.compile_grammar(g))
    return m.accept_string(text) and m.accept_token(_xinfo.stop_token_ids[0]) and \
        m.is_terminated()


_xcomp = _xinfo = None
UNBOUNDED = {"json_object"}  # a garbage model may run to max_tokens in a string


def valid(kind, spec, text):
    if kind == "json":
        return jsonschema_rs.validator_for(spec).is_valid(json.loads(text))
    if kind == "json_object":
        return isinstance(json.loads(text), dict)
    if kind == "regex":
        return re.fullmatch(spec, text) is not None
    if kind == "choice":
        return text in spec
    return in_grammar(text, spec)


def run(client, model, kind, spec, seed, temp):
    """(finish_reason, text) of one constrained chat request."""
    kw = {}
    if kind == "json":
        kw["response_format"] = {"type": "json_schema",
                                 "json_schema": {"name": "s", "schema": spec, "strict": True}}
    elif kind == "json_object":
        kw["response_format"] = {"type": "json_object"}
    else:
        kw["extra_body"] = {f"guided_{kind}": spec}
    r = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "go"}], seed=seed, temperature=temp,
        max_tokens=150 if kind in UNBOUNDED else 400, **kw)
    return r.choices[0].finish_reason, r.choices[0].message.content


def suite(client, model, jobs, seeds=SEEDS):
    """Every job with every seed, 8 at a time (batched in the engine)."""
    t0 = time.time()
    with cf.ThreadPoolExecutor(8) as pool:
        futs = {pool.submit(run, client, model, k, s, seed, t): (k, s, seed, t)
                for k, s in jobs for seed, t in seeds}
        bad = []
        for f, (k, s, seed, t) in futs.items():
            try:
                fin, text = f.result()
                ok = fin == "stop" and valid(k, s, text) or (k in UNBOUNDED and fin == "length")
            except Exception as e:  # noqa: BLE001 (a failure to report)
                fin, text, ok = "exception", repr(e), False
            if not ok:
                bad.append(f"{k} {json.dumps(s)[:60]} seed {seed} T {t}: {fin} {text[:120]!r}")
    d.check(f"{model}/valid_outputs", not bad,
            f"{len(bad)}/{len(futs)} invalid: " + " | ".join(bad[:3]))
    print(f"# {model}: {len(futs)} requests in {time.time() - t0:.1f}s", flush=True)


TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string", "maxLength": 10},
                                     "unit": {"enum": ["c", "f"]}},
    "required": ["city", "unit"]}}},
    {"type": "function", "function": {"name": "get_time", "parameters": {
        "type": "object", "properties": {"tz": {"type": "integer", "minimum": -12,
                                                "maximum": 12}}, "required": ["tz"]}}}]


def tool_choice(client, model, parallel):
    """required (streamed and not) and named: tool_calls whose arguments
    validate against their tool's parameters."""
    params = {t["function"]["name"]: t["function"]["parameters"] for t in TOOLS}
    for choice, stream in (("required", False), ("required", True),
                           ({"type": "function", "function": {"name": "get_time"}}, False)):
        calls, fin, ok = [], None, False
        for seed in (1, 2, 3):
            args = dict(model=model, messages=[{"role": "user", "content": "?"}], tools=TOOLS,
                        tool_choice=choice, max_tokens=300, seed=seed, temperature=1.0,
                        parallel_tool_calls=parallel)
            if stream:
                acc = {}
                for ch in client.chat.completions.create(stream=True, **args):
                    c = ch.choices[0]
                    for tc in c.delta.tool_calls or []:
                        e = acc.setdefault(tc.index, {"name": "", "arguments": ""})
                        e["name"] += tc.function.name or ""
                        e["arguments"] += tc.function.arguments or ""
                    fin = c.finish_reason or fin
                calls = list(acc.values())
            else:
                m = client.chat.completions.create(**args).choices[0]
                fin = m.finish_reason
                calls = [{"name": c.function.name, "arguments": c.function.arguments}
                         for c in m.message.tool_calls or []]
            ok = fin == "tool_calls" and calls and all(
                c["name"] in params and
                jsonschema_rs.validator_for(params[c["name"]]).is_valid(json.loads(c["arguments"]))
                for c in calls)
            if isinstance(choice, dict):
                ok = ok and len(calls) == 1 and calls[0]["name"] == "get_time"
            if not ok:
                break
        d.check(f"{model}/tool_choice_{'named' if isinstance(choice, dict) else choice}"
                f"{'_stream' if stream else ''}", ok, f"{fin} {calls}")


def bad_specs(fe, model):
    """A bad schema / regex / grammar is a 400 naming the field."""
    for body, param in (({"guided_regex": "(a"}, "guided_regex"),
                        ({"guided_grammar": "root ::= x"}, "guided_grammar"),
                        ({"guided_choice": [1]}, "guided_choice"),
                        ({"response_format": {"type": "json_schema", "json_schema": {
                            "name": "x", "schema": {"type": "string", "contentEncoding": "b"}}}},
                         "response_format"),
                        ({"response_format": {"type": "yaml"}}, "response_format"),
                        ({"guided_regex": "a", "guided_choice": ["a"]}, "guided_choice"),
                        ({"tool_choice": "required"}, "tool_choice")):
        status, a = d.post_json(fe.url + "/v1/chat/completions",
                                dict(model=model, messages=[{"role": "user", "content": "x"}],
                                     **body))
        err = json.loads(a)["error"] if status == 400 else {}
        d.check(f"bad_spec_400/{param}/{json.dumps(body)[:40]}",
                status == 400 and err.get("param") == param, f"{status} {a}")


def main(which):
    """which: "vocab" (tiny Qwen3 and Llama 3 with their real vocabularies) or
    "small" (stories260K aggregated and disaggregated prefill -> decode, the
    mock engine, tool_choice, bad specs)."""
    jobs = [(k, s) for k, ss in (("json", SCHEMAS), ("regex", REGEXES), ("choice", CHOICES),
                                 ("grammar", GRAMMARS)) for s in ss] + [("json_object", None)]
    if which == "vocab":
        models = {"qwen3-tiny": [worker(tiny_copy("qwen3-0.6b-shape", "q"), "qwen3-tiny")],
                  "llama3-tiny": [worker(tiny_copy("llama-3.2-1b-shape", "l"), "llama3-tiny")]}
    else:
        models = {"stories": [worker(d.MODEL, "stories")],
                  "stories-pd": [worker(d.MODEL, "stories-pd", extra=["--role", "prefill",
                                                                      "--kv-transport", "tcp"]),
                                 worker(d.MODEL, "stories-pd", extra=["--role", "decode",
                                                                      "--kv-transport", "tcp"])],
                  "qwen3-mock": [worker(tiny_copy("qwen3-0.6b-shape", "q"), "qwen3-mock", "mock",
                                        ["--speedup-ratio", "1000"])]}
    fe = d.frontend(["--router-mode", "kv", "--max-local-prefill-length", "0"])
    client = openai.OpenAI(base_url=fe.url + "/v1", api_key="none", max_retries=0,
                           timeout=120)
    d.wait_until(lambda: set(models) <= {m.id for m in client.models.list().data}, timeout=60)
    for model in models:
        # the mock engine draws among the allowed Qwen3 tokens: a smaller
        # suite (each new grammar costs it the cold walks of a 150k vocabulary)
        if model == "qwen3-mock":
            suite(client, model, jobs[:2] + jobs[-3:-1])
        elif which == "vocab":	# two seeds: the program stays under a minute
            suite(client, model, jobs[:6] + jobs[-3:-1], SEEDS[::2])
        else:
            suite(client, model, jobs)
    if which == "small":
        remote = d.metric(d.http_get(fe.url + "/metrics")[1],
                          "dyn_frontend_disagg_decisions_total", decision="remote") or 0
        d.check("stories-pd/prefilled_remotely", remote >= 33, f"{remote} remote prefills")
    if which == "vocab":
        tool_choice(client, "qwen3-tiny", True)
    else:
        # a garbage model may chain calls without end: one call here
        tool_choice(client, "stories", False)
        bad_specs(fe, "stories")
    d.finish()
