"""sysport - /health, /live and /metrics answered the same way by every role:
a worker's system port (`dyn serve --system-port`), a frontend (on its API
port) and `dyn router --system-port`.

Requests go through Python's http.client; the expected behaviour is HTTP's
(RFC 9110: HEAD is GET without the body, 405 names the allowed methods in
Allow) and the one documented in dyn-serve(1), dyn-frontend(1) and
dyn-router(1): 200 {"status":"healthy",...} / {"status":"live"}, the
Prometheus text format 0.0.4 (checked with `promtool check metrics`), and
OpenAI-shaped error bodies for 404 and 405.  For every path and method the
three roles must give the same status, Content-Type, Allow header and
error shape.
"""
import http.client
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "pylib"))
import dynproc as d  # noqa: E402

METRICS_TYPE = "text/plain; version=0.0.4; charset=utf-8"

w = d.worker()
fe = d.frontend()
rt = d.Proc(["router", "--system-port", "0", "--lease-ttl", "3000"],
            r"router instance [0-9a-f]{16} listening on \S+ .* system port (\d+)")
ROLES = {"worker": w.sys_port, "frontend": fe.port, "router": int(rt.m.group(1))}
d.wait_until(lambda: d.http_get(fe.url + "/v1/models")[1].count('"id"') == 1)


def request(port, method, path):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request(method, path)
    r = conn.getresponse()
    body = r.read()
    conn.close()
    return r.status, {k.lower(): v for k, v in r.getheaders()}, body


def error_shape(body):
    """The OpenAI error object's (type, code: a string or null, has a message,
    param null)."""
    try:
        e = json.loads(body)["error"]
        return (e["type"], e["code"], bool(e["message"]), e["param"] is None)
    except (ValueError, KeyError, TypeError):
        return None


seen = {}    # (path, method) -> {role: (status, content type, allow, error shape)}
for role, port in ROLES.items():
    for path in ("/health", "/live", "/metrics", "/no/such/path"):
        get = request(port, "GET", path)
        head = request(port, "HEAD", path)
        post = request(port, "POST", path)
        for method, (st, h, body) in (("GET", get), ("HEAD", head), ("POST", post)):
            seen.setdefault((path, method), {})[role] = (
                st, h.get("content-type"), h.get("allow"),
                error_shape(body) if st >= 400 and method != "HEAD" else None)
        st, h, body = get
        if path == "/health":
            doc = json.loads(body)
            d.check(f"{role}: GET /health is 200 healthy", st == 200 and
                    h["content-type"] == "application/json" and doc["status"] == "healthy",
                    f"{st} {body[:200]!r}")
        elif path == "/live":
            d.check(f"{role}: GET /live is 200 live", st == 200 and
                    json.loads(body) == {"status": "live"}, f"{st} {body[:200]!r}")
        elif path == "/metrics":
            d.check(f"{role}: GET /metrics is the text format", st == 200 and
                    h["content-type"] == METRICS_TYPE and body.startswith(b"# HELP dyn_"),
                    f"{st} {h.get('content-type')} {body[:100]!r}")
            d.promtool_check(f"promtool check metrics ({role})", body.decode())
        else:
            d.check(f"{role}: an unknown path is 404 with an error body", st == 404 and
                    error_shape(body) == ("not_found_error", None, True, True),
                    f"{st} {body[:200]!r}")
        if path != "/no/such/path":
            hst, hh, hbody = head
            # a body that does not change between the two requests has the same length
            same_len = path == "/metrics" or hh.get("content-length") == h.get("content-length")
            d.check(f"{role}: HEAD {path} is GET without the body",
                    hst == st and hbody == b"" and int(hh.get("content-length", 0)) > 0 and
                    same_len, f"{hst} {hh} {hbody[:80]!r}")
            pst, ph, pbody = post
            d.check(f"{role}: POST {path} is 405 with Allow: GET, HEAD",
                    pst == 405 and ph.get("allow") == "GET, HEAD" and
                    error_shape(pbody) == ("invalid_request_error", None, True, True),
                    f"{pst} {ph} {pbody[:200]!r}")

for (path, method), by_role in sorted(seen.items()):
    d.check(f"{method} {path}: the same answer from every role",
            len(set(by_role.values())) == 1, str(by_role))

d.finish()
