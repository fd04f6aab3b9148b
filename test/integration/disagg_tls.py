"""disagg_tls - KV transfers over mutual TLS (dyn serve --kv-transfer-tls).

A test CA, a second ("rogue") CA and their certificates are made here with
the openssl command line.  One frontend and every worker run the request
plane over mutual TLS; a prefill and a decode worker of stories260K add
--kv-transfer-tls.  References independent of the code under test: an agg
worker's greedy answers (no KV transfer at all), `openssl s_client` and a
raw socket speaking to the prefill worker's data port.

Checked: the prefill worker's record advertises "tls":true with its data
port; the TLS pair's greedy answers equal the agg worker's token for
token, every one prefilled remotely with its KV fetched (bytes in, no
fallback); the data port completes a TLS handshake for s_client with a
certificate from the cluster CA, refuses one from the rogue CA (a log
line), and a plain FETCH on a raw socket gets no KV bytes (the lender lends
nothing); a decode worker without --kv-transfer-tls paired with the TLS
prefill worker falls back to local prefill with a clear log line and still
answers as the agg worker; --kv-transfer-tls with --kv-transport ucx, or
without the request-plane certificates, is a usage error.
"""
import os
import shutil
import socket
import struct
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "pylib"))
import dynproc as d  # noqa: E402

if not shutil.which("openssl"):
    d.skip("all", "needs the openssl command")
    d.finish()

PKI = os.path.join(d.tmp, "pki")
os.makedirs(PKI)
MAX_TOKENS = 12


def ossl(*args):
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=30)


def pair(ca, leaf):
    e = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    ossl("req", "-x509", *e, "-keyout", f"{PKI}/{ca}.key", "-out", f"{PKI}/{ca}.pem",
         "-subj", f"/CN={ca}", "-days", "2")
    ossl("req", *e, "-keyout", f"{PKI}/{leaf}.key", "-out", f"{PKI}/{leaf}.csr",
         "-subj", f"/CN={leaf}")
    ossl("x509", "-req", "-in", f"{PKI}/{leaf}.csr", "-CA", f"{PKI}/{ca}.pem", "-CAkey",
         f"{PKI}/{ca}.key", "-CAcreateserial", "-out", f"{PKI}/{leaf}.pem", "-days", "2")
    return f"{PKI}/{leaf}.pem", f"{PKI}/{leaf}.key"


NODE = pair("cluster", "node")
ROGUE = pair("rogue", "intruder")
CA = f"{PKI}/cluster.pem"
RPC = ["--rpc-tls-cert", NODE[0], "--rpc-tls-key", NODE[1], "--rpc-tls-ca", CA]


def worker(name, role, extra=()):
    args = ["serve", "--model", d.MODEL, "--served-model-name", name, "--role", role,
            "--engine", "builtin", "--system-port", "0", "--threads", "1",
            "--kv-cache-dtype", "f32"] + RPC + list(extra)
    w = d.Proc(args, r"instance ([0-9a-f]{16}) .* system port (\d+)", timeout=60,
               env={"DYN_LOG": "info"})
    w.id, w.sys_port = w.m.group(1), int(w.m.group(2))
    return w


wm = d.sys_metric
fe = d.frontend(["--router-mode", "kv", "--max-local-prefill-length", "0",
                 "--prefill-timeout", "20000"] + RPC)
ref = worker("ref", "agg")
pre = worker("tls", "prefill", ["--kv-transfer-tls"])
dec = worker("tls", "decode", ["--kv-transfer-tls"])
mix = worker("mix", "decode")          # plain, paired with the TLS prefill worker below
ok = d.wait_until(lambda: all(d.metric(d.http_get(fe.url + "/metrics")[1],
                                       "dyn_frontend_workers", model=m, role=r) == 1
                              for m, r in (("ref", "agg"), ("tls", "prefill"),
                                           ("tls", "decode"), ("mix", "decode"))), timeout=30)
d.check("the frontend sees the agg, prefill and decode workers over mutual TLS", ok,
        fe.stderr()[-1000:])

kv = d.instance_meta(pre).get("kv", {})
d.check("the prefill worker's record advertises its data port as TLS",
        kv.get("tls") is True and kv.get("ucx") is False and ":" in kv.get("tcp", ""), f"{kv}")

PROMPTS = ["Once upon a time, there was a little girl named Lily.",
           "Tom had a red ball.", "Hi",
           "The old man sat on the bench. " * 6 + "He was waiting for his friend.",
           "There was a big tree in the garden. Birds lived in it and sang. " * 5]


def complete(model, prompt):
    status, a = d.post_json(fe.url + "/v1/completions",
                            {"model": model, "prompt": prompt, "max_tokens": MAX_TOKENS,
                             "temperature": 0})
    return a["choices"][0]["text"] if status == 200 else f"HTTP {status}: {str(a)[:300]}"


want = [complete("ref", p) for p in PROMPTS]
d.check("the agg worker answers", all(not w.startswith("HTTP ") for w in want), want)
got = [complete("tls", p) for p in PROMPTS]
d.check(f"{len(PROMPTS)} greedy answers over TLS KV transfers equal the agg worker's",
        got == want, f"{got} vs {want}")
d.check("every TLS request was prefilled remotely, its KV fetched, no fallback",
        wm(dec, "dyn_worker_prefill_total", where="remote") == len(PROMPTS) and
        wm(dec, "dyn_worker_kv_fallbacks_total") == 0 and
        wm(dec, "dyn_worker_kv_transfer_bytes_total", direction="in") > 0,
        f"remote {wm(dec, 'dyn_worker_prefill_total', where='remote')} fallbacks "
        f"{wm(dec, 'dyn_worker_kv_fallbacks_total')}")

host, port = kv.get("tcp", "127.0.0.1:1").rsplit(":", 1)


def s_client(cert):
    return subprocess.run(["openssl", "s_client", "-connect", f"{host}:{port}", "-CAfile", CA,
                           "-cert", cert[0], "-key", cert[1]],
                          input="", capture_output=True, text=True, timeout=30)


p = s_client(NODE)
d.check("the data port completes a TLS handshake with a certificate from the cluster CA",
        "Verify return code: 0 (ok)" in p.stdout and "CN = node" in p.stdout,
        p.stdout[-800:] + p.stderr[-300:])
before = pre.stderr().count("refusing borrower")
s_client(ROGUE)
d.wait_until(lambda: pre.stderr().count("refusing borrower") > before, timeout=10)
d.check("the data port refuses a certificate from another CA, with a log line",
        pre.stderr().count("refusing borrower") > before and pre.p.poll() is None,
        pre.stderr()[-800:])

# A well-formed plain FETCH (net/kv_xfer.h's wire format) for blocks of a
# handle: a plain lender would answer a status; this one says nothing.
layout = kv.get("layout", "")
req = b"DYKV" + struct.pack("<HHQIIQH", 1, 1, 1, 0, 1, 1, len(layout)) + layout.encode()
with socket.create_connection((host, int(port)), timeout=10) as s:
    s.sendall(req)
    data = b""
    try:
        while chunk := s.recv(4096):
            data += chunk
    except OSError:
        pass
# At most a TLS alert record (type 21) comes back, never a reply head.
print(f"INFO: the data port answered a plain FETCH with {data[:16]!r}", flush=True)
d.check("a plain client on the data port gets no KV reply (the connection is closed)",
        not data or data[0] == 21, repr(data[:64]))

# Mismatch: a plain decode worker and the TLS prefill worker.  The frontend
# pairs "mix" requests with a prefill worker of model "mix": start one.
pre_mix = worker("mix", "prefill", ["--kv-transfer-tls"])
d.wait_until(lambda: d.metric(d.http_get(fe.url + "/metrics")[1], "dyn_frontend_workers",
                              model="mix", role="prefill") == 1, timeout=30)
got = [complete("mix", p) for p in PROMPTS[:2]]
d.check("a decode worker without --kv-transfer-tls prefills locally and answers as the agg "
        "worker", got == want[:2] and wm(mix, "dyn_worker_kv_fallbacks_total") == 2,
        f"{got} vs {want[:2]}, fallbacks {wm(mix, 'dyn_worker_kv_fallbacks_total')}")
d.check("the mismatch is a clear log line", "encrypts KV transfers" in mix.stderr(),
        mix.stderr()[-800:])


def usage_error(name, args, words):
    p = subprocess.run([d.DYN, "serve", "--model", d.MODEL, "--engine", "builtin"] + args,
                       capture_output=True, text=True, timeout=30,
                       env=dict(os.environ, DYN_STORE=d.store))
    d.check(name, p.returncode == 2 and all(x in p.stderr for x in words),
            f"exit {p.returncode}: {p.stderr[-400:]}")


usage_error("--kv-transfer-tls with --kv-transport ucx is a usage error",
            ["--role", "prefill", "--kv-transfer-tls", "--kv-transport", "ucx"] + RPC,
            ["UCX", "not encrypted"])
usage_error("--kv-transfer-tls without the request-plane certificates is a usage error",
            ["--role", "decode", "--kv-transfer-tls"], ["--rpc-tls-cert"])
d.finish()
