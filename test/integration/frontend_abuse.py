"""frontend_abuse - bad input against the frontend over raw sockets:
malformed JSON, wrong types, invalid UTF-8, huge bodies, header floods,
slowloris connections, unknown paths and methods, and hundreds of
concurrent streams with early disconnects.  Afterwards the frontend must
still answer correctly, and the workers must have freed every cancelled
request (their active_requests gauge back to 0).
"""
import json
import os
import resource
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "pylib"))
import dynproc as d  # noqa: E402

NAME = "stories260K"
STREAMS = int(os.environ.get("DYN_ABUSE_STREAMS", "1000"))

w = d.worker(["--context-length", "4096"], delay=5)
fe = d.frontend(["--request-timeout", "1", "--max-body-bytes", "1000000"])
d.check("model ready", d.wait_until(lambda: NAME in d.http_get(fe.url + "/v1/models")[1]))


def raw(data, timeout=5, read=True):
    s = socket.create_connection(("127.0.0.1", fe.port), timeout=timeout)
    s.sendall(data)
    out = b""
    if read:
        try:
            while True:
                b = s.recv(65536)
                if not b:
                    break
                out += b
                if b"\r\n\r\n" in out and b"Content-Length" in out:
                    head, _, body = out.partition(b"\r\n\r\n")
                    n = int([h for h in head.split(b"\r\n")
                             if h.lower().startswith(b"content-length")][0].split(b":")[1])
                    if len(body) >= n:
                        break
        except socket.timeout:
            pass
    s.close()
    return out


def post(path, body, extra=b""):
    if isinstance(body, str):
        body = body.encode()
    return raw(b"POST " + path.encode() + b" HTTP/1.1\r\nHost: x\r\nContent-Type: "
               b"application/json\r\nConnection: close\r\n" + extra +
               b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)


def status(resp):
    try:
        return int(resp.split(b" ", 2)[1])
    except Exception:  # noqa: BLE001
        return 0


def error_body(resp):
    try:
        return json.loads(resp.partition(b"\r\n\r\n")[2])["error"]
    except Exception:  # noqa: BLE001
        return None


r = post("/v1/completions", '{"model": "stories260K", "prompt": ')
d.check("malformed JSON: 400 with an OpenAI error", status(r) == 400 and error_body(r) and
        error_body(r)["type"] == "invalid_request_error")
r = post("/v1/chat/completions", '[1,2,3]')
d.check("JSON that is not an object: 400", status(r) == 400)
r = post("/v1/chat/completions", json.dumps({"model": NAME, "messages": "hi"}))
d.check("messages of the wrong type: 400 naming it", status(r) == 400 and
        error_body(r)["param"] == "messages")
r = post("/v1/completions", json.dumps({"model": NAME, "prompt": "x", "stream": "yes"}))
d.check("stream of the wrong type: 400", status(r) == 400 and error_body(r)["param"] == "stream")
r = post("/v1/completions", json.dumps({"model": NAME, "prompt": "x", "stop": [1]}))
d.check("stop of the wrong type: 400", status(r) == 400 and error_body(r)["param"] == "stop")
r = post("/v1/completions", json.dumps({"model": NAME, "prompt": [99999]}))
d.check("token id outside the vocabulary: 400", status(r) == 400)
r = post("/v1/completions", b'{"model": "stories260K", "prompt": "ab\xff\xfe"}')
d.check("invalid UTF-8: 400", status(r) == 400 and b"UTF-8" in r)
r = post("/v1/completions", b'{"model": "stories260K", "prompt": "' + b"[" * 5000 + b'"}')
d.check("deep nesting / junk: 400", status(r) == 400)
r = raw(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 50000000\r\n\r\n")
d.check("declared body over the limit: 413 before reading it", status(r) == 413)


def send_all_then_read(n):
    """A client that writes its whole body before it reads (Python's
    http.client does): it must get the 413, not a reset."""
    s = socket.create_connection(("127.0.0.1", fe.port), timeout=10)
    try:
        s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: "
                  b"application/json\r\nContent-Length: %d\r\n\r\n" % n + b"x" * n)
        out = b""
        while True:
            b = s.recv(65536)
            if not b:
                return out
            out += b
    except OSError as e:
        return repr(e).encode()
    finally:
        s.close()


r = send_all_then_read(3000000)
d.check("a 3 MB body sent whole before reading: 413, not a reset", status(r) == 413,
        r[:120])
try:
    import urllib.request
    urllib.request.urlopen(urllib.request.Request(
        fe.url + "/v1/completions", data=b"y" * 2000000,
        headers={"Content-Type": "application/json"}), timeout=10)
    code = 200
except urllib.error.HTTPError as e:
    code = e.code
except Exception as e:  # noqa: BLE001
    code = repr(e)
d.check("urllib posting a body over the limit reads the 413", code == 413, code)
r = raw(b"GET /v1/models HTTP/1.1\r\nHost: x\r\n" +
        b"".join(b"X-Flood-%d: y\r\n" % i for i in range(500)) + b"\r\n")
d.check("500 header fields: 431", status(r) == 431)
r = raw(b"GET /v1/models HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 100000 + b"\r\n\r\n")
d.check("a 100 KB header: 431", status(r) == 431)
r = raw(b"GARBAGE\r\n\r\n")
d.check("a malformed request line: 400", status(r) == 400)
r = raw(b"GET /v1/models HTTP/2.0\r\n\r\n")
d.check("an unknown HTTP version: 505", status(r) == 505)
r = raw(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
d.check("chunked request body: 411", status(r) == 411)
r = raw(b"GET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
d.check("unknown path: 404", status(r) == 404 and error_body(r) is not None)
r = raw(b"GET /v1/chat/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
d.check("wrong method: 405 with Allow", status(r) == 405 and b"Allow: POST" in r)
r = raw(b"HEAD /v1/chat/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
d.check("a reply to HEAD has headers and no body", status(r) == 405 and
        b"Content-Length: " in r and r.endswith(b"\r\n\r\n"), repr(r[-80:]))
r = raw(b"HEAD /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
g = raw(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
d.check("HEAD where GET works: 200, GET's Content-Length, no body",
        status(r) == 200 and r.endswith(b"\r\n\r\n") and
        [h for h in r.split(b"\r\n") if h.startswith(b"Content-Length")] ==
        [h for h in g.split(b"\r\n") if h.startswith(b"Content-Length")], repr(r))
body = json.dumps({"model": NAME, "prompt": "x", "max_tokens": 1}).encode()
r = post("/v1/completions", body, b"Content-Length: 3\r\n")
d.check("conflicting Content-Length headers: 400", status(r) == 400, repr(r[:60]))
r = post("/v1/completions", body, b"Content-Length: " + str(len(body)).encode() + b"\r\n")
d.check("a repeated, equal Content-Length is fine", status(r) == 200, repr(r[:60]))

# Keep-alive and pipelining: two requests on one connection, in order.
s = socket.create_connection(("127.0.0.1", fe.port), timeout=5)
s.sendall(b"GET /live HTTP/1.1\r\nHost: x\r\n\r\nGET /health HTTP/1.1\r\nHost: x\r\n"
          b"Connection: close\r\n\r\n")
buf = b""
while True:
    b = s.recv(65536)
    if not b:
        break
    buf += b
s.close()
d.check("keep-alive + pipelined requests answered in order",
        buf.count(b"HTTP/1.1 200") == 2 and buf.index(b'"live"') < buf.index(b'"healthy"'))

# Slowloris: 100 connections trickling a request head; the request timeout (1 s)
# closes them while normal requests go on being served.
slow = []
for i in range(100):
    s = socket.create_connection(("127.0.0.1", fe.port), timeout=5)
    s.sendall(b"GET /v1/models HTTP/1.1\r\nHost: x\r\n")
    slow.append(s)
t0 = time.time()
served = 0
while time.time() - t0 < 1.5:
    for s in slow[:10]:
        try:
            s.sendall(b"X-a: b\r\n")
        except OSError:
            pass
    if d.http_get(fe.url + "/v1/models")[0] == 200:
        served += 1
    time.sleep(0.1)
closed = 0
for s in slow:
    s.settimeout(3)
    try:
        data = s.recv(4096)
        if not data or b" 408 " in data:
            closed += 1
    except OSError:
        closed += 1
    s.close()
d.check("slowloris connections closed by the request timeout", closed == 100, f"{closed}/100")
d.check("normal requests served during slowloris", served >= 5, f"{served}")

# A thousand concurrent streams; two thirds disconnect early.
prompt = " ".join(["Once upon a time there was a little girl."] * 12)


def stream_request(max_tokens):
    body = json.dumps({"model": NAME, "prompt": prompt, "stream": True,
                       "max_tokens": max_tokens}).encode()
    return (b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)


# The streams that disconnect ask for 15 s of tokens, so that a client
# thread starved on a loaded machine still leaves before its stream ends.
kept_req, left_req = stream_request(300), stream_request(3000)
complete = [0]
lock = threading.Lock()


def one(i):
    try:
        s = socket.create_connection(("127.0.0.1", fe.port), timeout=30)
        s.sendall(left_req if i % 3 else kept_req)
        got = b""
        while True:
            b = s.recv(65536)
            if not b:
                break
            got += b
            if i % 3 and got.count(b"data: ") >= 3:
                break	# disconnect mid-stream
            if got.endswith(b"data: [DONE]\n\n\r\n0\r\n\r\n"):
                with lock:
                    complete[0] += 1
                break
        s.close()
    except OSError as e:
        print(f"stream {i}: {e}", file=sys.stderr)


threads = [threading.Thread(target=one, args=(i,)) for i in range(STREAMS)]
t0 = time.time()
for t in threads:
    t.start()
for t in threads:
    t.join(60)
want = len([i for i in range(STREAMS) if i % 3 == 0])
d.check(f"{STREAMS} concurrent streams: every kept stream completes", complete[0] == want,
        f"{complete[0]}/{want} in {time.time() - t0:.1f}s")


def worker_active():
    return d.metric(d.http_get(f"http://127.0.0.1:{w.sys_port}/metrics")[1],
                    "dyn_worker_active_requests")


d.check("disconnects cancel their worker requests (active back to 0)",
        d.wait_until(lambda: worker_active() == 0, timeout=10), f"active {worker_active()}")
mt = d.http_get(fe.url + "/metrics")[1]
n499 = d.metric(mt, "dyn_frontend_requests_total", status="499") or 0
d.check("disconnects counted as 499", n499 >= STREAMS - want - 5,
        f"{n499} of {STREAMS - want} disconnects")
d.check("frontend inflight back to 0", d.metric(mt, "dyn_frontend_inflight_requests",
                                                 model=NAME) == 0)

r = post("/v1/completions", json.dumps({"model": NAME, "prompt": "Once upon a time"}))
d.check("frontend still answers correctly afterwards", status(r) == 200 and
        json.loads(r.partition(b"\r\n\r\n")[2])["choices"][0]["text"] == " Once upon a time")

# Out of file descriptors: a frontend limited to 128 (soft and hard, so it
# cannot raise it) gets 300 connections at once.  It must pause accepting
# rather than spin on the listening socket (a busy loop that floods the
# log and starves the lease renewal), then serve again once they close.
def nofile_128():
    resource.setrlimit(resource.RLIMIT_NOFILE, (128, 128))


fe2 = d.frontend(preexec=nofile_128)
d.check("fd-limited frontend: model ready",
        d.wait_until(lambda: NAME in d.http_get(fe2.url + "/v1/models")[1]))
socks = []
for _ in range(300):
    try:
        socks.append(socket.create_connection(("127.0.0.1", fe2.port), timeout=5))
    except OSError:
        break


def fe2_cpu():
    with open(f"/proc/{fe2.p.pid}/stat") as f:
        st = f.read().split(")")[-1].split()
    return (int(st[11]) + int(st[12])) / os.sysconf("SC_CLK_TCK")


cpu0 = fe2_cpu()
time.sleep(2)
cpu1 = fe2_cpu() if fe2.p.poll() is None else 99
log = fe2.stderr()
d.check("out of descriptors: still running, a paused accept, a short log",
        fe2.p.poll() is None and "not accepting" in log and os.path.getsize(fe2.log.name) < 20000,
        f"alive={fe2.p.poll() is None} log {os.path.getsize(fe2.log.name)} bytes: {log[-300:]}")
d.check("out of descriptors: no busy loop (under 0.5 s of CPU in 2 s)", cpu1 - cpu0 < 0.5,
        f"{cpu1 - cpu0:.2f} s")
for s_ in socks:
    s_.close()


def answers():
    sk = socket.create_connection(("127.0.0.1", fe2.port), timeout=5)
    body = json.dumps({"model": NAME, "prompt": "Once upon a time"}).encode()
    sk.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
               b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    out = b""
    while True:
        b = sk.recv(65536)
        if not b:
            break
        out += b
    sk.close()
    return status(out) == 200 and \
        json.loads(out.partition(b"\r\n\r\n")[2])["choices"][0]["text"] == " Once upon a time"


d.check("out of descriptors: serves again once connections close",
        d.wait_until(answers, timeout=15, step=0.2))


# Output tokens are counted as they are streamed, so streams that got some
# before disconnecting count them too (each saw at least 3 chunks of text).
import concurrent.futures  # noqa: E402 (only this check needs it)


def out_tokens():
    return d.metric(d.http_get(fe.url + "/metrics")[1], "dyn_frontend_output_tokens_total",
                    model=NAME) or 0


def drop_after_three(_):
    b = json.dumps({"model": NAME, "prompt": prompt, "stream": True, "max_tokens": 100}).encode()
    s_ = socket.create_connection(("127.0.0.1", fe.port), timeout=30)
    s_.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: " +
               str(len(b)).encode() + b"\r\n\r\n" + b)
    got = b""
    while got.count(b"data: ") < 3:
        x = s_.recv(65536)
        if not x:
            break
        got += x
    s_.close()
    return got.count(b"data: ") >= 3


out0 = out_tokens()
with concurrent.futures.ThreadPoolExecutor(10) as ex:
    seen3 = sum(ex.map(drop_after_three, range(50)))
d.wait_until(lambda: d.metric(d.http_get(fe.url + "/metrics")[1],
                              "dyn_frontend_inflight_requests", model=NAME) == 0, timeout=10)
d.check("output tokens of disconnected streams are counted",
        seen3 == 50 and 3 * 50 <= out_tokens() - out0 <= 100 * 50, f"{seen3} {out_tokens() - out0}")
d.finish()
