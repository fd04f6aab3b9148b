"""store_etcd - dyn serving through a real etcd (Debian's etcd-server),
started here on free loopback ports and killed at exit.

Single member:
- a worker and a frontend on etcd://: the model is listed and served; the
  worker's lease revoked behind its back (etcdctl): it takes a new lease
  and registers again, served all along; etcd frozen (SIGSTOP: requests
  to it hang rather than fail) for 3 s: no completion waits on the store
  (each under 1 s, the store's request timeout being 3 s); the worker
  SIGKILLed, its lease
  expires and the model leaves /v1/models within the TTL + 1 s;
- watch resume: `dyn store watch` through a TCP proxy that the test cuts
  (every connection closed, new ones refused) while keys are written and
  deleted, then restores: the events dyn printed after its snapshot are
  exactly those `etcdctl watch --rev` replays for the same period (the
  reference), none missing, none twice;
- compaction: the proxy cut again, keys churned and etcd compacted past
  the watcher's revision: once back, the watcher's replayed view equals
  `etcdctl get --prefix`, and the deleted key was reported deleted;
- bad input: a port with nothing, and a port with a plain HTTP server
  that is not etcd: exit status 1, one line naming the URL;
- authentication: with auth enabled in etcd, user=/password= work, a wrong
  password and no credentials fail with a one-line error; a watcher whose
  token was invalidated while it was cut off (auth disabled and enabled
  again) authenticates anew when it reconnects and sees every event;
- https: an etcd serving a certificate of a test CA (openssl): ca=CA works,
  plain http to it and a CA that did not sign its certificate fail, one line.
Three members:
- a worker and a frontend given all three endpoints; the member they use
  (the first) SIGKILLed: the worker keeps its lease (same instance, same
  lease id in etcd), the frontend keeps serving, and a worker started
  afterwards is seen by the frontend (its watch moved to another member);
- the whole cluster stopped for 10 s (OUTAGE), then restarted: the
  frontend answers completions from its last view all along (every one
  tried succeeds, the last in the final second), the worker is registered afterwards, and
  a `dyn store watch` running across the outage reports exactly the
  events etcdctl replays for the period.
"""
import base64
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import http.server

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "pylib"))
import dynproc as d  # noqa: E402
import etcdproc as e  # noqa: E402

NAME = "stories260K"


class Proxy(threading.Thread):
    """A TCP proxy to 127.0.0.1:port that can be cut and restored."""

    def __init__(self, port):
        super().__init__(daemon=True)
        self.target, self.open, self.conns = port, True, []
        self.lock = threading.Lock()
        self.ls = socket.socket()
        self.ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.ls.bind(("127.0.0.1", 0))
        self.ls.listen(16)
        self.port = self.ls.getsockname()[1]
        self.start()

    def run(self):
        while True:
            c, _ = self.ls.accept()
            with self.lock:
                if not self.open:
                    c.close()
                    continue
                try:
                    u = socket.create_connection(("127.0.0.1", self.target))
                except OSError:
                    c.close()
                    continue
                self.conns += [c, u]
            for a, b in ((c, u), (u, c)):
                threading.Thread(target=self.pipe, args=(a, b), daemon=True).start()

    def pipe(self, a, b):
        try:
            while True:
                data = a.recv(65536)
                if not data:
                    break
                b.sendall(data)
        except OSError:
            pass
        for s in (a, b):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cut(self):
        with self.lock:
            self.open = False
            for s in self.conns:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            self.conns = []

    def restore(self):
        with self.lock:
            self.open = True


class Watcher:
    """dyn store watch PREFIX, its events after the snapshot collected."""

    def __init__(self, url, prefix):
        self.events, self.synced = [], threading.Event()
        self.log = open(os.path.join(d.tmp, "watch.log"), "a")
        self.p = subprocess.Popen([d.DYN, "store", "--store", url, "watch", prefix],
                                  stdout=subprocess.PIPE, stderr=self.log, text=True,
                                  env=dict(os.environ, DYN_LOG="info"))
        threading.Thread(target=self.read, daemon=True).start()

    def read(self):
        for line in self.p.stdout:
            ev = json.loads(line)
            if ev["type"] == "synced":
                self.synced.set()
            elif self.synced.is_set():
                self.events.append(ev)

    def stop(self):
        self.p.kill()
        self.p.wait()


def ctl_watch(cl, prefix, rev):
    """The events after revision rev (etcd's count) under prefix, as
    etcdctl replays them: [(type, key, value)]."""
    try:
        out = subprocess.run([e.ETCDCTL, "--endpoints", cl.endpoints(), "watch", "--prefix",
                              prefix, "--rev", str(rev), "-w", "json"],
                             capture_output=True, text=True, timeout=2,
                             env=dict(os.environ, ETCDCTL_API="3")).stdout
    except subprocess.TimeoutExpired as x:
        out = x.stdout.decode() if isinstance(x.stdout, bytes) else (x.stdout or "")
    evs = []
    for line in out.splitlines():
        if not line.startswith("{"):
            continue
        for ev in json.loads(line).get("Events") or []:
            kv = ev["kv"]
            key = base64.b64decode(kv["key"]).decode()
            val = base64.b64decode(kv.get("value", "")).decode()
            evs.append(("delete" if ev.get("type") == 1 else "put", key,
                        "" if ev.get("type") == 1 else val))
    return evs


def etcd_rev(cl):
    return int(json.loads(cl.ctl("endpoint", "status", "-w", "json"))[0]["Status"]["header"]
               ["revision"])


def models(f):
    try:
        return [m["id"] for m in json.loads(d.http_get(f.url + "/v1/models", 5)[1])["data"]]
    except (OSError, ValueError, KeyError):
        return []


def complete(f):
    try:
        r = d.post_json(f.url + "/v1/completions",
                        {"model": NAME, "prompt": "one two three", "max_tokens": 8}, 20)
        return r[0] == 200
    except OSError:
        return False


def store_cli(url, *args):
    return subprocess.run([d.DYN, "store", "--store", url, *args], capture_output=True,
                          text=True, timeout=30)


def lease_expiry(cl):
    d.store = cl.url()
    f = d.frontend()
    w = d.worker(ttl=1000)
    d.check("etcd: the model is listed and served",
            d.wait_until(lambda: NAME in models(f), 15) and complete(f), str(models(f)))
    key = f"v1/instances/dyn/backend/generate/{w.id}"
    lease0 = instance_lease(cl, key)
    cl.ctl("lease", "revoke", "%x" % lease0)

    def again():	# the instance and the card back, the model served
        lease = instance_lease(cl, key)
        return lease and lease != lease0 and NAME in models(f) and complete(f)
    d.check("etcd: a worker whose lease was revoked registers again under a new one",
            d.wait_until(again, 10),
            f"lease {lease0:x} -> {instance_lease(cl, key)}: {w.stderr()}")
    import signal
    cl.members[0].p.send_signal(signal.SIGSTOP)
    t0, slowest, n = time.time(), 0.0, 0
    try:
        while time.time() - t0 < 3:
            t = time.time()
            n += complete(f)
            slowest = max(slowest, time.time() - t)
    finally:
        cl.members[0].p.send_signal(signal.SIGCONT)
    d.check("etcd frozen: requests do not wait on the store", n > 0 and slowest < 1.0,
            f"{n} served, slowest {slowest:.2f} s")
    d.wait_until(lambda: NAME in models(f) and complete(f), 15)
    w.stop(signal_kill())
    t0 = time.time()
    gone = d.wait_until(lambda: NAME not in models(f), 10)
    took = time.time() - t0
    d.check("etcd: a SIGKILLed worker leaves /v1/models within TTL + 1 s", gone and took <= 2.5,
            f"gone={gone} after {took:.2f} s")
    f.stop()


def instance_lease(cl, key):
    """The lease of key in etcd (etcdctl's view), 0 when missing."""
    kvs = json.loads(cl.ctl("get", key, "-w", "json")).get("kvs") or [{}]
    return int(kvs[0].get("lease", 0))


def signal_kill():
    import signal
    return signal.SIGKILL


def watch_resume(cl):
    px = Proxy(cl.members[0].cport)
    url = f"etcd://127.0.0.1:{px.port}"
    cl.ctl("put", "w/before", "0")
    w = Watcher(url, "w/")
    if not d.check("etcd: watch synced", w.synced.wait(10)):
        return
    rev0 = etcd_rev(cl)
    for i in range(5):
        cl.ctl("put", f"w/k{i}", f"a{i}")
    d.wait_until(lambda: len(w.events) >= 5, 5)
    px.cut()
    for i in range(5):
        cl.ctl("put", f"w/k{i}", f"b{i}")
    cl.ctl("del", "w/k1")
    cl.ctl("put", "w/new", "n")
    time.sleep(1.0)		# the watcher retries against the cut proxy
    px.restore()
    cl.ctl("put", "w/after", "z")
    want = ctl_watch(cl, "w/", rev0 + 1)
    d.wait_until(lambda: len(w.events) >= len(want), 10)
    got = [(ev["type"], ev["key"], ev.get("value", "")) for ev in w.events]
    d.check("etcd: watch resumes without missing or repeating an event", got == want and
            len(want) == 13, f"dyn {got}\netcdctl {want}")

    # Compaction past the watcher's revision while it is cut off.
    px.cut()
    for i in range(20):
        cl.ctl("put", f"w/c{i % 3}", f"x{i}")
    cl.ctl("del", "w/k0")
    cl.ctl("put", "w/k2", "final")
    cl.ctl("compact", str(etcd_rev(cl)))
    time.sleep(0.5)
    px.restore()
    want_kvs = {}
    out = cl.ctl("get", "--prefix", "w/")
    lines = out.splitlines()
    for k, v in zip(lines[0::2], lines[1::2]):
        want_kvs[k] = v

    def view():
        kv = {}
        for ev in w.events:
            if ev["type"] == "put":
                kv[ev["key"]] = ev.get("value", "")
            else:
                kv.pop(ev["key"], None)
        return kv
    # the snapshot (w/before) came before the recorded events
    want_kvs.pop("w/before", None)
    d.wait_until(lambda: view() == want_kvs, 10)
    d.check("etcd: a compacted watch resyncs to etcd's contents", view() == want_kvs,
            f"dyn {view()}\netcd {want_kvs}")
    d.check("etcd: the resync reports the deleted key",
            any(ev["type"] == "delete" and ev["key"] == "w/k0" for ev in w.events[13:]))
    w.stop()


def bad_input(cl):
    dead = f"etcd://127.0.0.1:{e.free_port()}"
    r = store_cli(dead, "ls")
    d.check("etcd: unreachable endpoint: exit 1, one line", r.returncode == 1 and
            dead in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr)
    srv = http.server.HTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    url = f"etcd://127.0.0.1:{srv.server_address[1]}"
    r = store_cli(url, "ls")
    d.check("etcd: a non-etcd server: exit 1, one line", r.returncode == 1 and
            "not an etcd" in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr)
    srv.shutdown()


def auth(cl):
    cl.ctl("user", "add", "root:s3cret")
    cl.ctl("auth", "enable")
    try:
        good = cl.url(params="?user=root&password=s3cret")
        r = store_cli(good, "put", "auth/k", "v")
        r2 = store_cli(good, "get", "auth/k")
        d.check("etcd auth: user and password work", r.returncode == 0 and
                r2.stdout.strip() == "v", r.stderr + r2.stderr)
        r = store_cli(cl.url(params="?user=root&password=wrong"), "ls")
        d.check("etcd auth: a wrong password: exit 1, one line", r.returncode == 1 and
                "authentication" in r.stderr and len(r.stderr.strip().splitlines()) == 1,
                r.stderr)
        r = store_cli(cl.url(), "ls")
        d.check("etcd auth: no credentials: exit 1, one line", r.returncode == 1 and
                len(r.stderr.strip().splitlines()) == 1, r.stderr)

        px = Proxy(cl.members[0].cport)
        w = Watcher(f"etcd://127.0.0.1:{px.port}?user=root&password=s3cret", "auth/")
        root = ("--user", "root:s3cret")
        if d.check("etcd auth: watch synced", w.synced.wait(10)):
            px.cut()
            cl.ctl(*root, "auth", "disable")
            cl.ctl("auth", "enable")		# every token issued before is void
            cl.ctl(*root, "put", "auth/late", "x")
            px.restore()
            d.check("etcd auth: a watcher with a voided token authenticates anew",
                    d.wait_until(lambda: ("put", "auth/late") in
                                 [(ev["type"], ev["key"]) for ev in w.events], 10),
                    open(os.path.join(d.tmp, "watch.log")).read()[-1500:])
        w.stop()
    finally:
        cl.ctl("--user", "root:s3cret", "auth", "disable", check=False)


def openssl(*args):
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)


def make_ca(dirpath, name):
    """A CA and, signed by it, a certificate for 127.0.0.1: (cert, key, ca)."""
    ca, cakey = os.path.join(dirpath, name + "-ca.pem"), os.path.join(dirpath, name + "-ca.key")
    crt, key = os.path.join(dirpath, name + ".pem"), os.path.join(dirpath, name + ".key")
    csr, ext = os.path.join(dirpath, name + ".csr"), os.path.join(dirpath, name + ".ext")
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
            f"/CN={name} test CA", "-keyout", cakey, "-out", ca)
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
            "-keyout", key, "-out", csr)
    with open(ext, "w") as f:
        f.write("subjectAltName=IP:127.0.0.1\n")
    openssl("x509", "-req", "-in", csr, "-CA", ca, "-CAkey", cakey, "-CAcreateserial",
            "-days", "2", "-extfile", ext, "-out", crt)
    return crt, key, ca


def https():
    if not shutil.which("openssl"):
        d.skip("etcd https", "no openssl binary")
        return
    tls = make_ca(d.tmp, "good")
    other = make_ca(d.tmp, "other")
    cl = e.Cluster(1, tls=tls)
    try:
        url = f"etcd://127.0.0.1:{cl.members[0].cport}"
        r = store_cli(url + f"?ca={tls[2]}", "put", "tls/k", "v")
        r2 = store_cli(url + f"?ca={tls[2]}", "get", "tls/k")
        d.check("etcd https: ca= trusts the test CA", r.returncode == 0 and
                r2.stdout.strip() == "v" and cl.ctl("get", "tls/k").split() == ["tls/k", "v"],
                r.stderr + r2.stderr)
        r = store_cli(url, "ls")
        d.check("etcd https: plain http to it fails, one line", r.returncode == 1 and
                len(r.stderr.strip().splitlines()) == 1, r.stderr)
        r = store_cli(url + f"?ca={other[2]}", "ls")
        d.check("etcd https: a CA that did not sign its certificate fails, one line",
                r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1 and
                "certificate" in r.stderr.lower(), r.stderr)
    finally:
        cl.stop()


OUTAGE = 10	# seconds the whole cluster is down


def failover():
    cl = e.Cluster(3)
    d.store = cl.url()
    f = d.frontend()
    w = d.worker(ttl=2000)
    if not d.check("etcd cluster: the model is served",
                   d.wait_until(lambda: NAME in models(f), 15) and complete(f)):
        cl.stop()
        return
    key = f"v1/instances/dyn/backend/generate/{w.id}"
    lease0 = instance_lease(cl, key)
    cl.members[0].kill()
    time.sleep(3)		# beyond the lease TTL: renewals must have gone elsewhere
    d.check("etcd cluster: member killed: the worker keeps its lease",
            lease0 and instance_lease(cl, key) == lease0,
            f"{lease0:x} -> {instance_lease(cl, key):x}")
    d.check("etcd cluster: member killed: the frontend serves on",
            NAME in models(f) and complete(f))
    w.stop()
    w2 = d.worker(ttl=2000)
    d.check("etcd cluster: a worker started after the failover is routed to",
            d.wait_until(lambda: complete(f) and NAME in models(f), 10), w2.stderr())

    # The whole cluster down for OUTAGE seconds, then back.
    cl.restart(cl.members[0])
    watcher = Watcher(cl.url(), "o/")
    watcher.synced.wait(10)
    rev0 = etcd_rev(cl)
    cl.ctl("put", "o/before", "1")
    d.wait_until(lambda: len(watcher.events) >= 1, 5)
    for m in cl.members:
        m.kill()
    t0 = time.time()
    served, failed, last = 0, 0, 0.0
    while time.time() - t0 < OUTAGE:
        if complete(f):
            served, last = served + 1, time.time() - t0
        else:
            failed += 1
        time.sleep(0.2)
    for m in cl.members:
        m.start(cl.spec, "existing")
    cl.wait_up(cl.members)
    for i in range(5):
        cl.ctl("put", f"o/k{i}", str(i))
    cl.ctl("del", "o/k0")
    want = ctl_watch(cl, "o/", rev0 + 1)
    d.wait_until(lambda: len(watcher.events) >= len(want), 15)
    got = [(ev["type"], ev["key"], ev.get("value", "")) for ev in watcher.events]
    d.check(f"etcd cluster stopped {OUTAGE} s: the frontend serves from its last view",
            served >= OUTAGE and failed == 0 and last >= OUTAGE - 1,
            f"{served} served, {failed} failed, last success at {last:.1f} s")
    d.check("etcd cluster restarted: the watch resumes, nothing missed or repeated",
            got == want and len(want) == 7, f"dyn {got}\netcdctl {want}")
    key2 = f"v1/instances/dyn/backend/generate/{w2.id}"
    d.check("etcd cluster restarted: the worker is registered and served",
            d.wait_until(lambda: instance_lease(cl, key2) and complete(f), 15), w2.stderr())
    watcher.stop()
    f.stop()
    w2.stop()
    cl.stop()


def main():
    if not e.ETCD or not e.ETCDCTL:
        d.skip("etcd", "no etcd/etcdctl binary (apt-get install etcd-server etcd-client)")
        d.finish()
    cl = e.Cluster(1)
    lease_expiry(cl)
    watch_resume(cl)
    bad_input(cl)
    auth(cl)
    cl.stop()
    https()
    failover()
    d.finish()


if __name__ == "__main__":
    main()
