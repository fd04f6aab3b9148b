"""tls - HTTPS on the frontend and mutual TLS on the request plane.

A test CA, a second ("rogue") CA and their certificates are made here with
the openssl command line (nothing is committed).  References are
independent of dyn: the official OpenAI SDK over https (httpx verifying
against the test CA), curl, and `openssl s_client` talking to the
worker's request-plane port.

Checked: a frontend and an echo worker whose request plane is mutual TLS
serve a completion over HTTPS; plain http to the HTTPS port gets no
answer; s_client is served TLS 1.3 and 1.2, not 1.1; a router service on
mutual TLS routes the frontend's requests, and dyn router --dump reaches
it; the worker's port speaks TLS with a certificate from the cluster
CA and refuses (a log line, no crash) a client with a certificate from
another CA and one without a certificate, then still serves; a frontend
with --tls-ca-path answers curl with a client certificate from the CA and
refuses curl without one or with the rogue one; a frontend without the
request-plane certificates cannot reach the worker (its request fails,
nothing hangs); bad certificate or key paths and half-given options are
clear startup errors.
"""
import os
import re
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "pylib"))
import dynproc as d  # noqa: E402

if not shutil.which("openssl") or not shutil.which("curl"):
    d.skip("all", "needs the openssl and curl commands")
    d.finish()

import httpx  # noqa: E402
import openai  # noqa: E402

PKI = os.path.join(d.tmp, "pki")
os.makedirs(PKI)


def ossl(*args):
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=30)


def ca(name):
    ossl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", f"{PKI}/{name}.key", "-out", f"{PKI}/{name}.pem",
         "-subj", f"/CN={name}", "-days", "2")


def leaf(name, ca_name):
    ext = f"{PKI}/{name}.ext"
    with open(ext, "w") as f:
        f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    ossl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", f"{PKI}/{name}.key", "-out", f"{PKI}/{name}.csr", "-subj", f"/CN={name}")
    ossl("x509", "-req", "-in", f"{PKI}/{name}.csr", "-CA", f"{PKI}/{ca_name}.pem",
         "-CAkey", f"{PKI}/{ca_name}.key", "-CAcreateserial", "-out", f"{PKI}/{name}.pem",
         "-days", "2", "-extfile", ext)
    return f"{PKI}/{name}.pem", f"{PKI}/{name}.key"


ca("cluster")
ca("rogue")
CA = f"{PKI}/cluster.pem"
SRV = leaf("server", "cluster")
CLI = leaf("client", "cluster")
ROGUE = leaf("intruder", "rogue")
RPC = ["--rpc-tls-cert", SRV[0], "--rpc-tls-key", SRV[1], "--rpc-tls-ca", CA]
HTTPS = ["--tls-cert-path", SRV[0], "--tls-key-path", SRV[1]]


def https_frontend(extra, env=None):
    f = d.Proc(["frontend", "--http-port", "0", "--http-host", "127.0.0.1"] + extra,
               r"listening on https://[^:]+:(\d+)", env=env)
    f.port = int(f.m.group(1))
    f.url = f"https://127.0.0.1:{f.port}"
    return f


def curl(url, *args):
    return subprocess.run(["curl", "-sS", "--max-time", "10", *args, url],
                          capture_output=True, text=True, timeout=30)


def completion(url, verify):
    http = httpx.Client(verify=verify, timeout=30)
    c = openai.OpenAI(base_url=url + "/v1", api_key="x", http_client=http, max_retries=0)
    return c.completions.create(model="stories260K", prompt="Once upon a time",
                                max_tokens=4)


w = d.worker(RPC)
addr = d.instance_meta(w)
f = https_frontend(HTTPS + RPC)
d.wait_until(lambda: "stories260K" in curl(f.url + "/v1/models", "--cacert", CA).stdout)

try:
    r = completion(f.url, CA)
    d.check("completion over https and a mutual-TLS request plane",
            r.usage.completion_tokens == 4 and r.choices[0].text, repr(r))
except Exception as e:  # noqa: BLE001
    d.check("completion over https and a mutual-TLS request plane", False, repr(e))

p = curl(f.url.replace("https", "http") + "/v1/models")
d.check("plain http to the HTTPS port gets no HTTP answer",
        p.returncode != 0 and "stories260K" not in p.stdout, p.stdout + p.stderr)
p = curl(f.url + "/v1/models")
d.check("curl without the CA does not trust the frontend",
        p.returncode == 60, f"curl exit {p.returncode}: {p.stderr}")

# TLS 1.2 and 1.3 only (TLS 1.1 offered with the client's security level
# lowered so that it really is offered).
for ver, ok in (("-tls1_3", True), ("-tls1_2", True), ("-tls1_1", False)):
    extra = ["-cipher", "DEFAULT@SECLEVEL=0"] if ver == "-tls1_1" else []
    p = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{f.port}", "-CAfile", CA,
                        ver, *extra], input="", capture_output=True, text=True, timeout=30)
    d.check(f"openssl s_client {ver}: {'accepted' if ok else 'refused'}",
            ("Cipher is (NONE)" not in p.stdout and "CONNECTED" in p.stdout) == ok,
            p.stdout[-600:] + p.stderr[-300:])

# A router service over mutual TLS: the frontend routes through it.
rt = d.Proc(["router", "--system-port", "0", "--lease-ttl", "3000"] + RPC,
            r"router instance ([0-9a-f]{16}) listening on (\S+) .* system port (\d+)")
rt_sys = f"http://127.0.0.1:{rt.m.group(3)}/metrics"
fm = lambda: curl(f.url + "/metrics", "--cacert", CA).stdout  # noqa: E731
d.wait_until(lambda: d.metric(fm(), "dyn_frontend_router_in_use", router="service") == 1,
             timeout=15)
try:
    r = completion(f.url, CA)
    ok = r.usage.completion_tokens == 4
except Exception as e:  # noqa: BLE001
    ok = repr(e)
d.check("a router service on mutual TLS routes the frontend's requests",
        ok is True and (d.metric(d.http_get(rt_sys)[1], "dyn_router_decisions_total") or 0) >= 1,
        f"{ok}; {rt.stderr()[-800:]}")
p = subprocess.run([d.DYN, "router", "--dump", "--json", "--timeout", "5"] + RPC,
                   capture_output=True, text=True, timeout=30, env=dict(os.environ,
                                                                        DYN_STORE=d.store))
d.check("dyn router --dump over mutual TLS", p.returncode == 0 and w.id in p.stdout,
        p.stdout[-300:] + p.stderr[-300:])
rt.stop()

# The worker's request-plane port, from its instance record.
rec = subprocess.run([d.DYN, "store", "get", "--store", d.store,
                      f"v1/instances/dyn/backend/generate/{w.id}"],
                     capture_output=True, text=True, timeout=10).stdout
m = re.search(r'"address":"([^"]+)"', rec)
wport = m.group(1) if m else "127.0.0.1:1"


def s_client(*args):
    return subprocess.run(["openssl", "s_client", "-connect", wport, "-CAfile", CA, *args],
                          input="", capture_output=True, text=True, timeout=30)


p = s_client("-cert", CLI[0], "-key", CLI[1])
d.check("the worker's port speaks TLS with a certificate from the cluster CA",
        "Verify return code: 0 (ok)" in p.stdout and "CN = server" in p.stdout,
        p.stdout[-1500:] + p.stderr[-500:])


def refused(name, *args):
    before = w.stderr().count("refusing connection from")
    s_client(*args)
    d.wait_until(lambda: w.stderr().count("refusing connection from") > before, timeout=10)
    d.check(f"the worker refuses a client {name}, with a log line",
            w.stderr().count("refusing connection from") > before and w.p.poll() is None,
            w.stderr()[-1500:])


refused("with a certificate from another CA", "-cert", ROGUE[0], "-key", ROGUE[1])
refused("without a certificate")
try:
    r = completion(f.url, CA)
    d.check("the worker still serves after refusing them", r.usage.completion_tokens == 4)
except Exception as e:  # noqa: BLE001
    d.check("the worker still serves after refusing them", False, repr(e))

# A frontend without request-plane TLS: the worker does not let it in.
plain = d.frontend(["--migration-limit", "0"])
d.wait_until(lambda: "stories260K" in curl(plain.url + "/v1/models").stdout)
t0 = time.time()
p = curl(plain.url + "/v1/completions", "-H", "Content-Type: application/json", "-d",
         '{"model":"stories260K","prompt":"hi","max_tokens":2}', "-w", "\n%{http_code}")
code = p.stdout.strip().splitlines()[-1] if p.stdout.strip() else ""
d.check("a frontend without the cluster certificate is refused by the worker",
        code.startswith("5") and time.time() - t0 < 10, f"{code} {p.stdout[-300:]}")

# Mutual TLS on the HTTP port.
m = https_frontend(HTTPS + ["--tls-ca-path", CA] + RPC, env={"DYN_LOG": "info"})
ok = curl(m.url + "/v1/models", "--cacert", CA, "--cert", CLI[0], "--key", CLI[1])
d.check("mTLS frontend: curl with a client certificate from the CA is answered",
        ok.returncode == 0 and '"object":"list"' in ok.stdout, ok.stdout + ok.stderr)
no = curl(m.url + "/v1/models", "--cacert", CA)
d.check("mTLS frontend: curl without a client certificate is refused",
        no.returncode != 0 and '"object"' not in no.stdout, no.stdout + no.stderr)
bad = curl(m.url + "/v1/models", "--cacert", CA, "--cert", ROGUE[0], "--key", ROGUE[1])
d.check("mTLS frontend: curl with a certificate from another CA is refused",
        bad.returncode != 0 and '"object"' not in bad.stdout, bad.stdout + bad.stderr)
d.wait_until(lambda: "TLS handshake failed" in m.stderr(), timeout=10)
d.check("mTLS frontend: the refusal is logged", "TLS handshake failed" in m.stderr(),
        m.stderr()[-1000:])
print("INFO: " + "\nINFO: ".join(x for x in (m.stderr() + w.stderr()).splitlines()
                                  if "TLS handshake failed" in x), flush=True)


# Startup errors.
def start_fails(name, args, status, words):
    p = subprocess.run([d.DYN] + args, capture_output=True, text=True, timeout=30,
                       env=dict(os.environ, DYN_STORE=d.store))
    d.check(name, p.returncode == status and all(x in p.stderr for x in words),
            f"exit {p.returncode}: {p.stderr[-600:]}")


FE = ["frontend", "--http-port", "0", "--http-host", "127.0.0.1"]
start_fails("a missing certificate file is a clear error",
            FE + ["--tls-cert-path", f"{PKI}/nope.pem", "--tls-key-path", SRV[1]], 1,
            ["HTTPS", "nope.pem"])
start_fails("a key that is not the certificate's is a clear error",
            FE + ["--tls-cert-path", SRV[0], "--tls-key-path", CLI[1]], 1,
            ["private key", "client.key"])
start_fails("--tls-key-path alone is a usage error", FE + ["--tls-key-path", SRV[1]], 2,
            ["--tls-cert-path"])
start_fails("a request-plane CA that is not PEM is a clear error",
            ["serve", "--model", d.MODEL, "--engine", "echo", "--rpc-tls-cert", SRV[0],
             "--rpc-tls-key", SRV[1], "--rpc-tls-ca", SRV[1]], 1, ["CA", "server.key"])
start_fails("half the request-plane options is a usage error",
            ["serve", "--model", d.MODEL, "--engine", "echo", "--rpc-tls-cert", SRV[0]], 2,
            ["--rpc-tls-ca"])

d.finish()
