"""tls_netns - a cluster over "several hosts" with TLS everywhere: etcd,
the frontend, a router service and two workers, each process on its own
host (a network
namespace joined to the others by a bridge, test/integration/pylib/
netns.py; etcd in the root namespace on its bridge address).

    etcd (https, root namespace)  frontend (HTTPS, "front")
    echo worker ("one")           echo worker ("two")
    dyn router ("balancer")

Every certificate comes from one test CA made here with openssl and names
its host's bridge address.  The workers listen on and advertise their
namespace's address (--host); the store is etcd over https (?ca=); the
request plane is mutual TLS; the frontend serves HTTPS on its namespace's
address.  References: the official OpenAI SDK (httpx verifying against
the CA) from the root namespace, and the workers' own /metrics.

Checked: the frontend sees both workers through etcd; completions over
HTTPS are answered, and both workers served some (their request
counters); the instance records in etcd advertise the namespaces'
addresses; a worker started without the request-plane certificates is
refused by the others' peers (the frontend's requests to it fail, the
other workers still answer); then `dyn router --router-mode round-robin`
started on its own host: the frontend says it uses it (its metrics and
log), completions go through it (the router's own /metrics counts one
decision per request, the frontend's its calls to the router) and both
workers serve some.  Skipped without root/ip(8) namespaces,
etcd, openssl.
"""
import os
import re
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "pylib"))
import dynproc as d  # noqa: E402
import etcdproc  # noqa: E402

if not etcdproc.ETCD or not shutil.which("openssl"):
    d.skip("all", "needs etcd (Debian etcd-server) and openssl")
    d.finish()

import netns  # noqa: E402

addrs = netns.setup(("front", "one", "two", "balancer"))

import httpx  # noqa: E402
import openai  # noqa: E402

PKI = os.path.join(d.tmp, "pki")
os.makedirs(PKI)


def ossl(*args):
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=30)


EC = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
ossl("req", "-x509", *EC, "-keyout", f"{PKI}/ca.key", "-out", f"{PKI}/ca.pem",
     "-subj", "/CN=dyn-test-cluster", "-days", "2")
CA = f"{PKI}/ca.pem"


def node(who):
    with open(f"{PKI}/{who}.ext", "w") as f:
        f.write(f"subjectAltName=IP:{addrs[who][0]}\n")
    ossl("req", *EC, "-keyout", f"{PKI}/{who}.key", "-out", f"{PKI}/{who}.csr",
         "-subj", f"/CN={who}")
    ossl("x509", "-req", "-in", f"{PKI}/{who}.csr", "-CA", CA, "-CAkey", f"{PKI}/ca.key",
         "-CAcreateserial", "-out", f"{PKI}/{who}.pem", "-days", "2",
         "-extfile", f"{PKI}/{who}.ext")
    return f"{PKI}/{who}.pem", f"{PKI}/{who}.key"


certs = {who: node(who) for who in addrs}
etcd = etcdproc.Cluster(1, tls=(certs["root"][0], certs["root"][1], CA),
                        host=addrs["root"][0])
STORE = etcd.url(params=f"?ca={CA}")


def rpc_tls(who):
    c, k = certs[who]
    return ["--rpc-tls-cert", c, "--rpc-tls-key", k, "--rpc-tls-ca", CA]


def worker(who, tls=True):
    args = ["serve", "--model", d.MODEL, "--engine", "echo", "--system-port", "0",
            "--host", addrs[who][0], "--store", STORE, "--lease-ttl", "3000"]
    w = d.Proc(args + (rpc_tls(who) if tls else []),
               r"instance ([0-9a-f]{16}) .* system port (\d+)", timeout=30,
               wrap=netns.wrap(who))
    w.id, w.sys_port = w.m.group(1), int(w.m.group(2))
    w.metrics = f"http://{addrs[who][0]}:{w.sys_port}/metrics"
    return w


w1, w2 = worker("one"), worker("two")
fc, fk = certs["front"]
fe = d.Proc(["frontend", "--http-host", addrs["front"][0], "--http-port", "0",
             "--store", STORE, "--tls-cert-path", fc, "--tls-key-path", fk] + rpc_tls("front"),
            r"listening on https://([0-9.]+):(\d+)", timeout=30, wrap=netns.wrap("front"),
            env={"DYN_LOG": "router=info,warn"})	# it logs which router it uses
URL = f"https://{addrs['front'][0]}:{fe.m.group(2)}"
http = httpx.Client(verify=CA, timeout=30)
client = openai.OpenAI(base_url=URL + "/v1", api_key="x", http_client=http, max_retries=0)


def workers_seen():
    t = http.get(URL + "/metrics").text
    return d.metric(t, "dyn_frontend_workers", model="stories260K", role="agg") or 0


d.check("the frontend sees both workers through etcd over https",
        d.wait_until(lambda: workers_seen() == 2, timeout=20), fe.stderr())

texts = []
for i in range(6):
    try:
        r = client.completions.create(model="stories260K", prompt=f"Tom had {i} red balls.",
                                      max_tokens=4)
        texts.append(r.choices[0].text if r.usage.completion_tokens == 4 else None)
    except Exception as e:  # noqa: BLE001
        texts.append(repr(e))
served = [d.metric(d.http_get(w.metrics)[1], "dyn_worker_requests_total") or 0
          for w in (w1, w2)]
d.check("completions over HTTPS, served by workers on other hosts over mutual TLS",
        all(isinstance(t, str) and t and not t.startswith("APIConnectionError") for t in texts)
        and all(n >= 1 for n in served) and sum(served) == 6, f"{texts} served {served}")

recs = etcd.ctl("get", "--prefix", "v1/instances/dyn/backend/generate/")
got = set(re.findall(r'"address":"([0-9.]+):\d+"', recs))
d.check("the instance records in etcd advertise the namespaces' addresses",
        got == {addrs["one"][0], addrs["two"][0]}, recs[-600:])

# A worker without the cluster certificate joins the store but cannot be
# reached: the frontend's calls to it fail, the others go on serving.
w3 = worker("root", tls=False)
d.wait_until(lambda: workers_seen() == 3, timeout=20)
fails = 0
for i in range(6):
    try:
        client.completions.create(model="stories260K", prompt="Mia found a key.", max_tokens=2)
    except openai.APIStatusError:
        fails += 1
d.wait_until(lambda: "TLS handshake failed" in fe.stderr(), timeout=10)
d.check("a worker without the cluster certificate is not reached over TLS",
        "TLS handshake failed" in fe.stderr() and w3.p.poll() is None and
        (d.metric(d.http_get(w3.metrics)[1],
                  "dyn_worker_requests_total") or 0) == 0,
        f"{fails} failed; {fe.stderr()[-800:]}")
d.check("no process died", all(p.p.poll() is None for p in d.procs),
        [p.stderr() for p in d.procs if p.p.poll() is not None][:1])

# A router service on its own host: the frontend routes through it.
w3.stop()
d.wait_until(lambda: workers_seen() == 2, timeout=20)
rt = d.Proc(["router", "--router-mode", "round-robin", "--host", addrs["balancer"][0],
             "--system-port", "0", "--store", STORE, "--lease-ttl", "3000"] + rpc_tls("balancer"),
            r"router instance ([0-9a-f]{16}) listening on (\S+) .* system port (\d+)",
            timeout=30, wrap=netns.wrap("balancer"))
RT_METRICS = f"http://{addrs['balancer'][0]}:{rt.m.group(3)}/metrics"


def fe_metric(name, **labels):
    return d.metric(http.get(URL + "/metrics").text, name, **labels) or 0


d.check("the frontend uses the router service on another host (metrics, log)",
        d.wait_until(lambda: fe_metric("dyn_frontend_router_in_use", router="service") == 1,
                     timeout=20) and
        "using the router service " + rt.m.group(1) in fe.stderr(), fe.stderr()[-800:])
before = [d.metric(d.http_get(w.metrics)[1], "dyn_worker_requests_total") or 0
          for w in (w1, w2)]
calls0 = fe_metric("dyn_frontend_router_service_calls_total")
ok = 0
for i in range(6):
    try:
        r = client.completions.create(model="stories260K", prompt=f"Ann saw {i} cats.",
                                      max_tokens=4)
        ok += r.usage.completion_tokens == 4
    except Exception as e:  # noqa: BLE001
        print(f"through the router: {e!r}")
served = [(d.metric(d.http_get(w.metrics)[1], "dyn_worker_requests_total") or 0) - b
          for w, b in zip((w1, w2), before)]
decisions = d.metric(d.http_get(RT_METRICS)[1], "dyn_router_decisions_total") or 0
calls = fe_metric("dyn_frontend_router_service_calls_total") - calls0
d.check("completions routed by the router on its own host, served by both workers",
        ok == 6 and served == [3, 3] and decisions == 6 and calls == 6,
        f"{ok} ok, served {served}, router decisions {decisions}, frontend calls {calls}; "
        f"{rt.stderr()[-600:]}")
d.check("no process died (router part)", all(p.p.poll() is None for p in d.procs if p is not w3),
        [p.stderr() for p in d.procs if p.p.poll() is not None and p is not w3][:1])
etcd.stop()
d.finish()
