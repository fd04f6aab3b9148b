#!/usr/bin/env python3
"""template_conformance.py - dyn's chat templates against Python jinja2.

Every template of the shared corpus (../shared/templates/*.jinja) and the
chat template of every shared model (../shared/models/*/tokenizer_config.json)
is rendered for every conversation of test/fixtures/chat_conversations.json,
in several variants (with and without add_generation_prompt, enable_thinking
false and true, continue_final_message for assistant prefills, tools added
to conversations without them), by dyn
(`dyn template ... --batch`, one process per template) and by a reference
renderer written here on Python's jinja2, configured as Hugging Face
transformers configures it for apply_chat_template:

  - jinja2.sandbox.ImmutableSandboxedEnvironment(trim_blocks=True,
    lstrip_blocks=True) with the loopcontrols extension and a {% generation %}
    block extension that renders its body;
  - a tojson filter that is json.dumps(ensure_ascii=False, indent, separators,
    sort_keys) (no HTML escaping);
  - globals raise_exception(msg) (raises) and strftime_now(fmt) (fixed to
    NOW here; dyn gets the same instant through DYN_TEMPLATE_NOW);
  - variables messages, tools (None if absent), documents (None if absent),
    add_generation_prompt, the special tokens, and the extra kwargs;
  - continue_final_message trimming the output after the final message.

Large inputs, on dyn's default limits: every bare template of the corpus
with 400 tools of about 3 KB (a 1.2 MB prompt; templates such as LFM2.5
build it with {% set ns.x = ns.x + tool %}), and a template that
accumulates 3,000 messages of 200 characters in a namespace.

The two results must be byte-identical, or both must be errors.  Output:
one "PASS: template/NAME (...)" or "FAIL: template/NAME: case: first
difference" line per template.  If jinja2 cannot be imported the test is
skipped (SKIP lines), or fails when $CI is set.
"""
import datetime
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
SHARED = os.path.normpath(os.path.join(ROOT, "..", "shared"))
TEMPLATES = os.path.join(SHARED, "templates")
MODELS = os.path.join(SHARED, "models")
FIXTURE = os.path.join(ROOT, "test", "fixtures", "chat_conversations.json")
DYN = os.environ.get("DYN_BIN") or os.path.join(ROOT, "dyn")

NOW_TEXT = "2025-03-14T09:26:53"
NOW = datetime.datetime(2025, 3, 14, 9, 26, 53)
# Special tokens for bare template files (models bring their own).
BARE_TOKENS = {"bos_token": "<|bos|>", "eos_token": "<|eos|>"}


def corpus():
    """(name, template source or None, model dir or None) for every subject."""
    out = []
    if os.path.isdir(TEMPLATES):
        for f in sorted(os.listdir(TEMPLATES)):
            if f.endswith(".jinja"):
                out.append(("template/" + f[:-len(".jinja")], os.path.join(TEMPLATES, f), None))
    if os.path.isdir(MODELS):
        for d in sorted(os.listdir(MODELS)):
            cfg = os.path.join(MODELS, d, "tokenizer_config.json")
            if not os.path.isfile(cfg):
                continue
            with open(cfg, encoding="utf-8") as f:
                if not json.load(f).get("chat_template"):
                    continue
            out.append(("model/" + d, None, os.path.join(MODELS, d)))
    return out


def cases(conversations, variant_tools):
    """The requests: each conversation in each variant."""
    out = []
    for c in conversations:
        base = {"messages": c["messages"]}
        for key in ("tools", "documents"):
            if key in c:
                base[key] = c[key]
        kwargs = dict(c.get("kwargs", {}))
        variants = [
            ("gen", True, False, {}),
            ("nogen", False, False, {}),
            ("gen+nothink", True, False, {"enable_thinking": False}),
            ("gen+think", True, False, {"enable_thinking": True}),
        ]
        if c.get("prefill"):
            variants.append(("continue", False, True, {}))
        if "tools" not in c:
            variants.append(("gen+tools", True, False, {}))
        for vname, agp, cfm, extra in variants:
            req = dict(base)
            if vname == "gen+tools":
                req["tools"] = variant_tools
            req["add_generation_prompt"] = agp
            req["continue_final_message"] = cfm
            kw = dict(kwargs)
            kw.update(extra)
            req["chat_template_kwargs"] = kw
            out.append((c["name"] + "/" + vname, req))
    return out


def special_tokens(cfg):
    """transformers' special_tokens_map: the set, non-empty tokens."""
    out = {}
    for attr in ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token",
                 "cls_token", "mask_token"):
        v = cfg.get(attr)
        if isinstance(v, dict):
            v = v.get("content")
        if v:
            out[attr] = v
    extra = [t.get("content") if isinstance(t, dict) else t
             for t in (cfg.get("additional_special_tokens") or [])]
    if extra:
        out["additional_special_tokens"] = extra
    return out


def make_env(jinja2):
    import jinja2.ext
    import jinja2.nodes
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    class GenerationBlock(jinja2.ext.Extension):
        """{% generation %}...{% endgeneration %}: renders its body."""
        tags = {"generation"}

        def parse(self, parser):
            lineno = next(parser.stream).lineno
            body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
            return jinja2.nodes.CallBlock(self.call_method("_body"), [], [], body).set_lineno(lineno)

        def _body(self, caller):
            return caller()

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent,
                          separators=separators, sort_keys=sort_keys)

    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def strftime_now(fmt):
        return NOW.strftime(fmt)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[GenerationBlock, jinja2.ext.loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env


def continue_final(rendered, messages):
    """transformers' continue_final_message post-processing."""
    final = messages[-1]["content"]
    if isinstance(final, (list, tuple)):
        for block in reversed(final):
            if "text" in block:
                final = block["text"]
                break
        else:
            raise ValueError("no text to continue in the final message")
    if final.strip() not in rendered:
        raise ValueError("final message not in the rendered chat")
    loc = rendered.rindex(final.strip())
    if rendered[loc:loc + len(final.lstrip())] == final:
        return rendered[:loc + len(final.lstrip())]
    return rendered[:loc + len(final.strip())]


def compile_reference(env, source):
    """The compiled template, or the exception jinja2 raised compiling it."""
    try:
        return env.from_string(source)
    except Exception as e:
        return e


def reference(tmpl, tokens, req):
    try:
        if isinstance(tmpl, Exception):
            raise tmpl
        if req["continue_final_message"] and req["add_generation_prompt"]:
            raise ValueError("continue_final_message and add_generation_prompt")
        kwargs = dict(tokens)
        kwargs.update(req["chat_template_kwargs"])
        out = tmpl.render(messages=req["messages"], tools=req.get("tools"),
                          documents=req.get("documents"),
                          add_generation_prompt=req["add_generation_prompt"], **kwargs)
        if req["continue_final_message"]:
            out = continue_final(out, req["messages"])
        return ("ok", out)
    except Exception as e:  # any jinja2 or Python error: dyn must fail too
        return ("error", "%s: %s" % (type(e).__name__, e))


def run_dyn(path, model_dir, reqs):
    args = [DYN, "template"]
    if model_dir:
        args.append(model_dir)
    if path:
        args += ["--template", path]
    args += ["--batch", "-"]
    env = dict(os.environ, DYN_TEMPLATE_NOW=NOW_TEXT)
    stdin = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in reqs)
    p = subprocess.run(args, input=stdin.encode(), stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, env=env, timeout=120)
    if p.returncode != 0:
        return None, "dyn exited with %d: %s" % (p.returncode, p.stderr.decode(errors="replace")[-300:])
    lines = p.stdout.decode().split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if len(lines) != len(reqs):
        return None, "dyn printed %d results for %d requests" % (len(lines), len(reqs))
    res = []
    for line in lines:
        r = json.loads(line)
        res.append(("ok", r["prompt"]) if r["ok"] else ("error", r["error"]))
    return res, None


def first_difference(a, b):
    ab, bb = a.encode(), b.encode()
    i = 0
    while i < min(len(ab), len(bb)) and ab[i] == bb[i]:
        i += 1
    return "first difference at byte %d: jinja2 %r, dyn %r" % (
        i, ab[max(0, i - 20):i + 40], bb[max(0, i - 20):i + 40])


def big_tools(n=400):
    """n tool definitions of about 3 KB each (JSON), some non-ASCII."""
    tools = []
    for i in range(n):
        props = {"arg_%d" % k: {"type": "string" if k % 3 else "integer",
                                "description": "argument %d of tool %d, caf\u00e9 \u2014 " % (k, i)
                                + "lorem ipsum " * 4}
                 for k in range(20)}
        tools.append({"type": "function", "function": {
            "name": "tool_%03d" % i, "description": "Tool number %d. " % i + "Does things. " * 12,
            "parameters": {"type": "object", "properties": props,
                           "required": ["arg_0", "arg_1"]}}})
    return tools


ACCUMULATE = (
    "{%- set ns = namespace(text='', n=0) -%}\n"
    "{%- for m in messages -%}\n"
    "{%- set ns.text = ns.text + '<|' + m.role + '|>' ~ m.content -%}\n"
    "{%- if m.role == 'user' %}{% set ns.n = ns.n + m.content|length %}{% endif -%}\n"
    "{%- endfor -%}\n"
    "{{- ns.text }}|{{ ns.n }}|{{ ns.text|length }}")


def large_inputs(env):
    """Big prompts must render on the default limits, as jinja2 renders them."""
    failed = 0
    tools = big_tools()
    convo = [{"role": "system", "content": "You are a helpful assistant."},
             {"role": "user", "content": "What is the weather in Paris?"}]
    req = {"messages": convo, "tools": tools, "add_generation_prompt": True,
           "continue_final_message": False}
    subjects = []
    if os.path.isdir(TEMPLATES):
        for f in sorted(os.listdir(TEMPLATES)):
            if f.endswith(".jinja"):
                path = os.path.join(TEMPLATES, f)
                with open(path, encoding="utf-8") as fh:
                    subjects.append(("large/%s+400-tools" % f[:-len(".jinja")], path, fh.read(), req))
    messages = [{"role": ("user", "assistant")[i % 2],
                 "content": ("%05d " % i) + ("w\u00e9rd " * 40)[:194]} for i in range(3000)]
    fd, acc_path = tempfile.mkstemp(suffix=".jinja")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(ACCUMULATE)
    subjects.append(("large/accumulate-3000-messages", acc_path, ACCUMULATE,
                     {"messages": messages, "add_generation_prompt": False,
                      "continue_final_message": False}))
    try:
        for name, path, source, r in subjects:
            r = dict(r, chat_template_kwargs=dict(BARE_TOKENS))
            ref = reference(compile_reference(env, source), {}, r)
            got, why = run_dyn(path, None, [r])
            if got is None:
                print("FAIL: %s: %s" % (name, why))
                failed += 1
            elif got[0] == ref or (ref[0] == "error" and got[0][0] == "error"):
                print("PASS: %s (%s, %d bytes)" % (
                    name, "byte-identical" if ref[0] == "ok" else "errors in both",
                    len(ref[1].encode()) if ref[0] == "ok" else 0))
            elif ref[0] != got[0][0]:
                print("FAIL: %s: jinja2 %s but dyn %s: %s" % (
                    name, "rendered" if ref[0] == "ok" else "failed",
                    "rendered" if got[0][0] == "ok" else "failed",
                    (ref[1] if ref[0] == "error" else got[0][1])[:300]))
                failed += 1
            else:
                print("FAIL: %s: %s" % (name, first_difference(ref[1], got[0][1])))
                failed += 1
    finally:
        os.unlink(acc_path)
    return failed


def main():
    subjects = corpus()
    try:
        import jinja2
    except ImportError as e:
        word = "FAIL" if os.environ.get("CI") else "SKIP"
        for name, _, _ in subjects or [("template/all", None, None)]:
            print("%s: %s: jinja2 not available (%s)" % (word, name, e))
        return 1 if word == "FAIL" else 0
    if not subjects:
        print("FAIL: template/corpus: no templates found under %s" % SHARED)
        return 1
    with open(FIXTURE, encoding="utf-8") as f:
        fixture = json.load(f)
    reqs = cases(fixture["conversations"], fixture["variant_tools"])
    env = make_env(jinja2)
    failed = 0
    for name, path, model_dir in subjects:
        if path:
            with open(path, encoding="utf-8") as f:
                source = f.read()
            tokens = dict(BARE_TOKENS)
        else:
            with open(os.path.join(model_dir, "tokenizer_config.json"), encoding="utf-8") as f:
                cfg = json.load(f)
            source = cfg["chat_template"]
            tokens = special_tokens(cfg)
        # bare templates get their tokens as kwargs, models from their config
        sent = []
        for _, r in reqs:
            r = dict(r)
            if path:
                kw = dict(tokens)
                kw.update(r["chat_template_kwargs"])
                r["chat_template_kwargs"] = kw
            sent.append(r)
        compiled = compile_reference(env, source)
        got, why = run_dyn(path, model_dir, sent)
        if got is None:
            print("FAIL: %s: %s" % (name, why))
            failed += 1
            continue
        bad = []
        n_ok = n_err = 0
        for (cname, req), dyn_res in zip(reqs, got):
            ref = reference(compiled, {} if path else tokens, dict(req, chat_template_kwargs=(
                dict(tokens, **req["chat_template_kwargs"]) if path else req["chat_template_kwargs"])))
            if ref[0] == "error" and dyn_res[0] == "error":
                n_err += 1
                continue
            if ref == dyn_res:
                n_ok += 1
                continue
            if ref[0] != dyn_res[0]:
                bad.append("%s: jinja2 %s but dyn %s: %s" % (
                    cname, "rendered" if ref[0] == "ok" else "failed",
                    "rendered" if dyn_res[0] == "ok" else "failed",
                    (ref[1] if ref[0] == "error" else dyn_res[1])[:300]))
            else:
                bad.append("%s: %s" % (cname, first_difference(ref[1], dyn_res[1])))
        if bad:
            failed += 1
            print("FAIL: %s: %d of %d cases differ; %s" % (name, len(bad), len(reqs), bad[0]))
            for b in bad[1:5]:
                print("    also %s" % b)
        else:
            print("PASS: %s (%d cases: %d rendered byte-identical, %d errors in both)" % (
                name, len(reqs), n_ok, n_err))
    failed += large_inputs(env)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
