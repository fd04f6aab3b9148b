"""disagg_faults - faults of disaggregated serving, through a frontend.

A frontend (round-robin, --max-local-prefill-length 8: every prompt here
is prefilled remotely when a prefill worker can be called) serves
stories260K twice: "ref" by an agg worker, "dis" by a prefill and a
decode worker (builtin engine).  Every request through "dis" must either
answer exactly what "ref" answers for the same greedy request (the
reference: an aggregated worker's own prefill, which test_engine checks
against a reference forward pass) or fail with a clear error; here each
fault leaves the decode worker able to prefill itself, so each must
answer.

The faults are placed with a request-plane proxy in front of the prefill
worker (its instance record's address is pointed at the proxy, the
worker itself is untouched): it relays dyn-rpc(1) frames, and can stop
the worker as a prefill request passes, stop it as its kv_source answer
passes, hold that answer back, or rewrite the kv_source (another handle,
another data port).  Cases:
  1. the prefill worker SIGKILLed during the prefill (stopped as the
     request reaches it, then killed): the frontend counts the failed
     remote prefill and the decode worker prefills;
  2. the prefill worker SIGKILLed during the transfer (stopped as its
     answer passes, killed once the decode worker is fetching): the
     fetch fails, the decode worker falls back;
  3. blocks already released: a handle that an earlier fetch released,
     and a hold expired (--kv-hold-timeout) while its answer was held
     back: ENOENT from the lender, fallback; the unfetched hold expires;
  4. a transfer cut: a TCP relay to the real data port that closes after
     N bytes (inside the reply head, mid-block, one byte into a block),
     and fake lenders speaking dyn-kv-transfer(7): a valid head then
     half the payload (zeros), a head whose n_bytes is not count x
     block_bytes; the prompt sent again (the decode worker's prefix
     cache) still answers as "ref": no partly written block was kept;
  5. a peer speaking garbage to the prefill worker's data port (random
     bytes, another version, a bogus handle, a request cut short): the
     replies carry the errno dyn-kv-transfer(7) names, and the worker
     keeps serving remote prefills; peers holding all 256 connections
     the lender serves: a decode worker's is closed at once and it falls
     back, and fetches work again once they leave.
Fallbacks are checked in the decode worker's counters (kv_fallbacks,
kv_transfers in/failed, prefill where=local) and the frontend's
(remote_prefill_failures); at the end no block, request or hold is left
anywhere (and under SAN=1 the processes exit clean).
"""
import errno
import json
import os
import random
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "pylib"))
import dynproc as d  # noqa: E402




LAYERS, KV_HEADS, HEAD_DIM, VOCAB = d.model_kv_shape(d.MODEL)
BLOCK = 16                      # the builtin engine's default block size
BLOCK_BYTES = 2 * LAYERS * BLOCK * KV_HEADS * HEAD_DIM * 4     # f32 K and V
REPLY_HEAD = 16                 # FETCH_TCP reply: status, msg_len, n_bytes
TTL = 1500
MAX_TOKENS = 16


def worker(role, name, extra=()):
    args = ["serve", "--model", d.MODEL, "--served-model-name", name, "--engine", "builtin",
            "--role", role, "--system-port", "0", "--lease-ttl", str(TTL),
            "--kv-cache-dtype", "f32"] + list(extra)     # BLOCK_BYTES, exact answers
    w = d.Proc(args, r"instance ([0-9a-f]{16}) .* system port (\d+)")
    w.id, w.sys_port = w.m.group(1), int(w.m.group(2))
    return w


metrics, m = d.sys_metrics, d.sys_metric


def record_key(w):
    return f"v1/instances/dyn/backend/generate/{w.id}"


def store(*args):
    return subprocess.run([d.DYN, "store", "--store", d.store] + list(args),
                          capture_output=True, text=True, timeout=10)


# ---- the request-plane proxy ----------------------------------------------------------------
HEAD = struct.Struct("<2sBBHHQII")      # dyn-rpc(1) WIRE FORMAT: 24 bytes
DATA, REQUEST = 2, 1


def recv_exact(s, n):
    buf = b""
    while len(buf) < n:
        b = s.recv(n - len(buf))
        if not b:
            return None
        buf += b
    return buf


def read_frame(s):
    h = recv_exact(s, HEAD.size)
    if h is None:
        return None
    f = list(HEAD.unpack(h))
    p = recv_exact(s, f[6])
    return None if p is None else (f, p)


def write_frame(s, f, payload):
    f = list(f)
    f[6] = len(payload)
    s.sendall(HEAD.pack(*f) + payload)


class RpcProxy:
    """Relays request-plane frames between a frontend and one worker.
    on_request(body) runs before a REQUEST is passed on; on_kv_source(src)
    before a DATA frame with a kv_source is, and returns the kv_source to
    pass on."""

    def __init__(self, upstream):
        self.upstream = upstream
        self.on_request = None
        self.on_kv_source = None
        self.sources = []               # every kv_source the worker answered
        self.ls = socket.socket()
        self.ls.bind(("127.0.0.1", 0))
        self.ls.listen(16)
        self.addr = "127.0.0.1:%d" % self.ls.getsockname()[1]
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self):
        while True:
            try:
                c, _ = self.ls.accept()
            except OSError:
                return
            host, port = self.upstream.rsplit(":", 1)
            try:
                u = socket.create_connection((host, int(port)), timeout=5)
                u.settimeout(None)
            except OSError:
                c.close()
                continue
            threading.Thread(target=self.pump, args=(c, u, True), daemon=True).start()
            threading.Thread(target=self.pump, args=(u, c, False), daemon=True).start()

    def pump(self, src, dst, to_worker):
        try:
            while True:
                fr = read_frame(src)
                if fr is None:
                    break
                f, p = fr
                if to_worker and f[2] == REQUEST and self.on_request:
                    self.on_request(p[f[7]:])
                if not to_worker and f[2] == DATA and b"kv_source" in p:
                    o = json.loads(p)
                    self.sources.append(o["kv_source"])
                    if self.on_kv_source:
                        o["kv_source"] = self.on_kv_source(o["kv_source"])
                        p = json.dumps(o).encode()
                write_frame(dst, f, p)
        except (OSError, ValueError):
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()


def proxied(w):
    """w's requests go through a new RpcProxy: its instance record (lease,
    metadata and all) now names the proxy's address."""
    rec = json.loads(store("get", record_key(w)).stdout)
    w.kv_addr = rec["metadata"]["kv"]["tcp"]
    w.proxy = RpcProxy(rec["address"])
    rec["address"] = w.proxy.addr
    p = store("put", record_key(w), json.dumps(rec))
    return p.returncode == 0 or d.check("proxy record put", False, p.stderr)


def through_proxy(w):
    """Send "dis" requests until one passes w's proxy (the frontend has
    seen the new address); each must answer as "ref"."""
    for _ in range(20):
        n = len(w.proxy.sources)
        if not same_as_ref("a remote prefill answers as ref", prompt(40)):
            return False
        if len(w.proxy.sources) > n:
            return True
        time.sleep(0.1)
    return False


# ---- KV data-port peers -------------------------------------------------------------------
def listener():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(8)
    return s, "127.0.0.1:%d" % s.getsockname()[1]


def serve(s, handle):
    def run():
        while True:
            try:
                c, _ = s.accept()
            except OSError:
                return
            threading.Thread(target=handle, args=(c,), daemon=True).start()
    threading.Thread(target=run, daemon=True).start()


def cutter(upstream, limit):
    """A TCP relay to upstream that passes the lender's first limit bytes,
    then closes both sides."""
    s, addr = listener()

    def handle(c):
        host, port = upstream.rsplit(":", 1)
        u = socket.create_connection((host, int(port)), timeout=10)

        def up():
            try:
                while True:
                    b = c.recv(65536)
                    if not b:
                        break
                    u.sendall(b)
            except OSError:
                pass
        threading.Thread(target=up, daemon=True).start()
        sent = 0
        try:
            while sent < limit:
                b = u.recv(min(65536, limit - sent))
                if not b:
                    break
                c.sendall(b)
                sent += len(b)
        except OSError:
            pass
        for x in (c, u):
            try:
                x.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            x.close()
    serve(s, handle)
    return s, addr


def read_req(c):
    """A dyn-kv-transfer(7) request: (op, handle, first, count, block_bytes, layout)."""
    h = recv_exact(c, 34)
    if h is None or h[:4] != b"DYKV":
        return None
    _, _, op, handle, first, count, bb, ll = struct.unpack("<4sHHQIIQH", h)
    return op, handle, first, count, bb, recv_exact(c, ll)


def fake_lender(extra_bytes, payload_fraction):
    """A lender that answers a FETCH_TCP with status 0, n_bytes = count x
    block_bytes + extra_bytes, then payload_fraction of that many zero
    bytes, and closes."""
    s, addr = listener()

    def handle(c):
        try:
            r = read_req(c)
            if r:
                n = r[3] * r[4] + extra_bytes
                c.sendall(struct.pack("<IIQ", 0, 0, n) + bytes(int(n * payload_fraction)))
        except OSError:
            pass
        c.close()
    serve(s, handle)
    return s, addr


def kv_request(op=1, handle=0, first=0, count=1, block_bytes=BLOCK_BYTES, layout=b"",
               version=1, magic=b"DYKV"):
    return struct.pack("<4sHHQIIQH", magic, version, op, handle, first, count, block_bytes,
                       len(layout)) + layout


def kv_reply(c):
    """(status, message) of the reply on c, None when c closed first."""
    c.settimeout(10)
    h = recv_exact(c, 8)
    if h is None:
        return None
    status, n = struct.unpack("<II", h)
    return status, (recv_exact(c, n) or b"").decode(errors="replace")


def closed(c):
    try:
        c.settimeout(10)
        return c.recv(1) == b""
    except OSError:
        return True


# ---- requests -------------------------------------------------------------------------------
rng = random.Random(20261207)


def prompt(n):
    return [1] + [rng.randrange(3, VOCAB) for _ in range(n - 1)]


def complete(model, ids, timeout=60):
    return d.post_json(fe.url + "/v1/completions",
                       {"model": model, "prompt": ids, "max_tokens": MAX_TOKENS,
                        "temperature": 0}, timeout)


def answer(res):
    st, body = res
    if st != 200 or body["usage"]["completion_tokens"] != MAX_TOKENS:
        return None
    return body["choices"][0]["text"]


def same_as_ref(name, ids, res=None):
    """Check that "dis" answers ids (or answered res) as "ref" does."""
    want = answer(complete("ref", ids))
    res = res or complete("dis", ids)
    return d.check(name, want is not None and answer(res) == want, f"{res} want {want!r}")


def fmetric(name, **labels):
    return d.metric(d.http_get(fe.url + "/metrics")[1], name, **labels) or 0


def pool(role):
    return fmetric("dyn_frontend_workers", model="dis", role=role)


def counts():
    """The decode worker's fetch outcomes and the frontend's failures."""
    t = metrics(dec)
    c = {k: d.metric(t, "dyn_worker_kv_fallbacks_total", cause=k) or 0
         for k in ("fetch_failed", "cancelled", "layout")}
    c["in_failed"] = d.metric(t, "dyn_worker_kv_transfers_total", direction="in",
                              result="failed") or 0
    c["remote"] = d.metric(t, "dyn_worker_prefill_total", where="remote") or 0
    c["local"] = d.metric(t, "dyn_worker_prefill_total", where="local") or 0
    for k in ("error", "timeout", "no_kv_source"):
        c["fe_" + k] = fmetric("dyn_frontend_remote_prefill_failures_total", cause=k)
    return c


def delta(before, **want):
    """Whether the counts moved by exactly want (the others not at all)."""
    now = counts()
    diff = {k: now[k] - before[k] for k in now}
    return all(diff[k] == want.get(k, 0) for k in diff), diff


def check_delta(name, before, **want):
    ok, diff = delta(before, **want)
    return d.check(name, ok, f"moved {diff}, want {want}")


def idle(w):
    return (m(w, "dyn_worker_kv_blocks_used") == 0 and m(w, "dyn_worker_active_requests") == 0)


fe = d.frontend(["--max-local-prefill-length", "8"])
ref = worker("agg", "ref")
dec = worker("decode", "dis")
pre = worker("prefill", "dis", ["--kv-hold-timeout", "1000"])
ok = proxied(pre) and d.wait_until(lambda: pool("prefill") == 1 and pool("decode") == 1 and
                                   fmetric("dyn_frontend_workers", model="ref") == 1, 30)
ok = ok and through_proxy(pre)
d.check("the workers form the pools, the prefill worker's requests through the proxy", ok,
        fe.stderr())
if not ok:
    d.finish()

# ---- through the proxy, no fault --------------------------------------------------------------
c0 = counts()
ids = prompt(100)
same_as_ref("through the proxy: remote prefill answers as ref", ids)
check_delta("through the proxy: one remote prefill, no fallback", c0, remote=1)
d.check("the proxy carried the prefill", pre.proxy.sources[-1]["n_tokens"] == len(ids) and
        pre.proxy.sources[-1]["tcp"] == pre.kv_addr, f"{pre.proxy.sources}")

# ---- 5. garbage on the prefill worker's data port -------------------------------------------
host, port = pre.kv_addr.rsplit(":", 1)
layout = pre.proxy.sources[-1]["layout"].encode()


def kv_conn():
    return socket.create_connection((host, int(port)), timeout=10)


c = kv_conn()
c.sendall(bytes(random.Random(5).randrange(256) for _ in range(4096)))
r = kv_reply(c)
d.check("garbage on the data port: EBADMSG, then the lender closes",
        r is not None and r[0] == errno.EBADMSG and closed(c), f"{r}")
c.close()
c = kv_conn()
c.sendall(kv_request(version=2, layout=layout))
r = kv_reply(c)
d.check("another protocol version: EPROTONOSUPPORT, then the lender closes",
        r is not None and r[0] == errno.EPROTONOSUPPORT and closed(c), f"{r}")
c.close()
c = kv_conn()
c.sendall(kv_request(handle=0x0123456789abcdef, count=65536, layout=layout))
r = kv_reply(c)
c.sendall(kv_request(handle=0x0123456789abcdef, block_bytes=BLOCK_BYTES + 4, layout=layout))
r2 = kv_reply(c)
d.check("a bogus handle: ENOENT naming it, and the connection stays open for the next request "
        "(a block size mismatch: EPROTO)",
        r is not None and r[0] == errno.ENOENT and "0123456789abcdef" in r[1] and
        r2 is not None and r2[0] == errno.EPROTO, f"{r} {r2}")
c.close()
c = kv_conn()
c.sendall(kv_request(op=9, layout=layout))
r = kv_reply(c)
d.check("an unknown op: EPROTO", r is not None and r[0] == errno.EPROTO, f"{r}")
c.close()
for cut in (3, 20, 34 + 2):     # requests cut short, then the peer goes
    c = kv_conn()
    c.sendall(kv_request(layout=layout)[:cut])
    c.close()
c = kv_conn()                   # and one that says nothing and stays
c0 = counts()
ids = prompt(90)
same_as_ref("after the garbage the prefill worker still serves remote prefills", ids)
check_delta("after the garbage: a remote prefill, no fallback", c0, remote=1)
c.close()
d.check("the prefill worker is alive", pre.p.poll() is None, pre.stderr())

# Peers holding every connection the lender serves (dyn-kv-transfer(7): 256
# at a time): one more is closed at once, and so is a decode worker's, which
# falls back rather than waiting; once they go, fetches work again.
held = [kv_conn() for _ in range(256)]
extra = kv_conn()
full = closed(extra)
extra.close()
c0 = counts()
same_as_ref("a lender at its connection limit: the decode worker falls back and answers as ref",
            prompt(90))
check_delta("a lender at its connection limit: fetch_failed counted, local prefill", c0,
            fetch_failed=1, in_failed=1, local=1)
d.check("a lender at its connection limit closes one more connection at once", full)
for c in held:
    c.close()
fetched = answered = False
for _ in range(20):             # the lender reaps the closed connections
    c0 = counts()
    ids = prompt(90)
    want, got = answer(complete("ref", ids)), answer(complete("dis", ids))
    answered = want is not None and got == want
    fetched = counts()["remote"] > c0["remote"]
    if fetched or not answered:
        break
    time.sleep(0.5)
d.check("once the peers leave, the decode worker fetches again and answers as ref",
        fetched and answered, f"{c0} {counts()}")

# ---- 3. blocks already released ---------------------------------------------------------------
old = pre.proxy.sources[-1]     # fetched and released by now
d.wait_until(lambda: m(pre, "dyn_worker_kv_holds") == 0, 5)
expired0 = m(pre, "dyn_worker_kv_hold_expired_total")
pre.proxy.on_kv_source = lambda src: dict(src, handle=old["handle"])
c0 = counts()
same_as_ref("a handle already released: the decode worker falls back and answers as ref",
            prompt(80))
pre.proxy.on_kv_source = None
check_delta("a handle already released: fetch_failed counted, local prefill", c0,
            fetch_failed=1, in_failed=1, local=1)
d.check("the hold that was never fetched expires",
        d.wait_until(lambda: m(pre, "dyn_worker_kv_holds") == 0 and
                     m(pre, "dyn_worker_kv_hold_expired_total") == expired0 + 1, 10),
        metrics(pre)[-1500:])


def late(src):
    time.sleep(2.0)             # twice the hold timeout
    return src


pre.proxy.on_kv_source = late
c0 = counts()
same_as_ref("an expired hold: the decode worker falls back and answers as ref", prompt(80))
pre.proxy.on_kv_source = None
check_delta("an expired hold: fetch_failed counted, local prefill", c0,
            fetch_failed=1, in_failed=1, local=1)
d.check("an expired hold: counted by the prefill worker",
        m(pre, "dyn_worker_kv_hold_expired_total") == expired0 + 2 and
        m(pre, "dyn_worker_kv_holds") == 0, metrics(pre)[-1500:])

# ---- 4. transfers cut ---------------------------------------------------------------------------
# 100 tokens: 99 pending, 7 blocks to fetch.  First the relay that cuts,
# letting everything through: the fetch succeeds through it.
peers = []
s, addr = cutter(pre.kv_addr, 1 << 30)
peers.append(s)
pre.proxy.on_kv_source = lambda src: dict(src, tcp=addr)
c0 = counts()
same_as_ref("a relay on the data path: remote prefill answers as ref", prompt(100))
pre.proxy.on_kv_source = None
check_delta("a relay on the data path: the blocks fetched through it, no fallback", c0,
            remote=1)
for what, limit in (("inside the reply head", 10),
                    ("mid-block", REPLY_HEAD + 2 * BLOCK_BYTES + BLOCK_BYTES // 2),
                    ("one byte into a block", REPLY_HEAD + 3 * BLOCK_BYTES + 1)):
    s, addr = cutter(pre.kv_addr, limit)
    peers.append(s)
    expired0 = m(pre, "dyn_worker_kv_hold_expired_total")
    pre.proxy.on_kv_source = lambda src: dict(src, tcp=addr)
    c0 = counts()
    ids = prompt(100)
    same_as_ref(f"a transfer cut {what}: the decode worker falls back and answers as ref", ids)
    pre.proxy.on_kv_source = None
    check_delta(f"a transfer cut {what}: fetch_failed counted, local prefill", c0,
                fetch_failed=1, in_failed=1, local=1)
    d.check(f"a transfer cut {what}: the lender releases the hold when the connection ends",
            d.wait_until(lambda: m(pre, "dyn_worker_kv_holds") == 0, 5) and
            m(pre, "dyn_worker_kv_hold_expired_total") == expired0, metrics(pre)[-1500:])
    c0 = counts()
    same_as_ref(f"a transfer cut {what}: the prompt again, from the decode worker's cache, "
                "answers as ref", ids)
for what, extra, frac in (("a valid head, then half the payload (zeros)", 0, 0.5),
                          ("n_bytes not count x block_bytes", BLOCK_BYTES, 1.0)):
    s, addr = fake_lender(extra, frac)
    peers.append(s)
    pre.proxy.on_kv_source = lambda src: dict(src, tcp=addr)
    c0 = counts()
    ids = prompt(100)
    same_as_ref(f"a fake lender, {what}: the decode worker falls back and answers as ref", ids)
    pre.proxy.on_kv_source = None
    check_delta(f"a fake lender, {what}: fetch_failed counted, local prefill", c0,
                fetch_failed=1, in_failed=1, local=1)
    same_as_ref(f"a fake lender, {what}: the prompt again answers as ref", ids)
for s in peers:
    s.close()
d.check("the unfetched holds expire", d.wait_until(lambda: m(pre, "dyn_worker_kv_holds") == 0, 5),
        metrics(pre)[-1500:])

# ---- 1. the prefill worker killed during the prefill --------------------------------------------
stopped = threading.Event()


def stop_on_request(body):
    if b'"prefill"' in body:
        pre.p.send_signal(signal.SIGSTOP)     # it never reads the request
        stopped.set()


pre.proxy.on_request = stop_on_request
c0 = counts()
ids = prompt(100)
box = []
t = threading.Thread(target=lambda: box.append(complete("dis", ids)))
t.start()
stopped.wait(20)
time.sleep(0.2)
pre.stop(signal.SIGKILL)
t.join(60)
same_as_ref("the prefill worker killed during the prefill: the request answers as ref", ids,
            box[0] if box else (0, "no answer"))
check_delta("the prefill worker killed during the prefill: the frontend counts the failed "
            "remote prefill, the decode worker prefills", c0, fe_error=1, local=1)
d.check("the killed prefill worker leaves the pool",
        d.wait_until(lambda: pool("prefill") == 0, TTL / 1000 + 10))

# ---- 2. the prefill worker killed during the transfer -------------------------------------------
pre = worker("prefill", "dis")
ok = proxied(pre) and d.wait_until(lambda: pool("prefill") == 1, 20)
d.check("a new prefill worker joins the pool, its requests through the proxy",
        ok and through_proxy(pre))
stopped.clear()


def stop_on_answer(src):
    pre.p.send_signal(signal.SIGSTOP)         # its data port accepts, never answers
    stopped.set()
    return src


pre.proxy.on_kv_source = stop_on_answer
c0 = counts()
ids = prompt(120)
box = []
t0 = time.time()
t = threading.Thread(target=lambda: box.append(complete("dis", ids)))
t.start()
stopped.wait(20)
fetching = d.wait_until(lambda: m(dec, "dyn_worker_active_requests") == 1, 10)
time.sleep(0.3)
pre.stop(signal.SIGKILL)
t.join(60)
took = time.time() - t0
d.check("the decode worker was fetching when the prefill worker died", fetching and took < 9,
        f"took {took:.1f} s (the fetch deadline is 10 s)")
same_as_ref("the prefill worker killed during the transfer: the request answers as ref", ids,
            box[0] if box else (0, "no answer"))
check_delta("the prefill worker killed during the transfer: fetch_failed counted, local "
            "prefill", c0, fetch_failed=1, in_failed=1, local=1)
d.check("the decode worker's warning names the lender",
        pre.id in dec.stderr() and "prefilling locally" in dec.stderr(), dec.stderr())

# ---- nothing left behind ------------------------------------------------------------------------
d.check("the decode worker holds no block and no request",
        d.wait_until(lambda: idle(dec), 5),
        "\n".join(x for x in metrics(dec).splitlines()
                  if re.match(r"dyn_worker_(kv_blocks|active|requests|waiting)", x)))
d.check("the frontend answered every request 200",
        fmetric("dyn_frontend_requests_total", model="dis") ==
        fmetric("dyn_frontend_requests_total", model="dis", status="200") > 0,
        d.http_get(fe.url + "/metrics")[1][-2000:])
d.finish()
