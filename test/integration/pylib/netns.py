"""netns - network namespaces joined by veth pairs to a bridge, for the
tests that play several hosts on one machine (root only).

    root namespace:  veth ---+
    ROLE namespaces: veth -- bridge (in a namespace of its own)

setup(roles) makes one namespace per role (their first letters must
differ, and not be 'r', the root's), gives each and the root namespace an
address in a free /24 of 10.254.0.0/16 and returns {role: (address,
interface)}, "root" included; or prints SKIP and exits when namespaces
cannot be made (not root, no ip(8), no permission).  The namespaces,
their interfaces and the test's processes are removed at exit, whatever
happens (SIGTERM from run.sh's timeout included).
"""
import atexit
import ipaddress
import os
import re
import shutil
import signal
import subprocess
import sys

import dynproc as d

PID = os.getpid()
PREFIX = "dynit"                # namespace names: dynit-ROLE-PID
ROOT_IF = f"dyr{PID}"           # the root namespace's end (interface names: 15 bytes at most)
NS = {}                         # role -> namespace name
made = []                       # namespaces made, to delete


def ip(*args, ns=None, check=True):
    cmd = ["ip"] + (["-n", ns] if ns else []) + list(args)
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=20)
    if check and p.returncode:
        raise RuntimeError(f"{' '.join(cmd)}: {p.stderr.strip()}")
    return p.stdout


def cleanup():
    for p in d.procs:               # nothing may keep a namespace alive
        if p.p.poll() is None:
            p.p.kill()
            p.p.wait()
    for ns in reversed(made):       # their veth ends go with them
        ip("netns", "del", ns, check=False)
    made.clear()
    ip("link", "del", ROOT_IF, check=False)


def stale_cleanup():
    """Namespaces of earlier runs of these tests whose process is gone (a
    run killed with SIGKILL cannot clean up)."""
    for line in ip("netns", "list", check=False).splitlines():
        m = re.match(rf"({PREFIX}-\w+-(\d+))\b", line)
        if m and not os.path.exists(f"/proc/{m.group(2)}"):
            ip("netns", "del", m.group(1), check=False)


def subnet():
    """A /24 in 10.254.0.0/16 that no route or address here overlaps."""
    used = [ipaddress.ip_network(w, strict=False)
            for w in re.findall(r"\b(\d+\.\d+\.\d+\.\d+(?:/\d+)?)", ip("-4", "route") +
                                ip("-4", "addr"))]
    for k in range(250):
        net = ipaddress.ip_network(f"10.254.{(PID + k) % 250}.0/24")
        if not any(net.overlaps(u) for u in used if u.prefixlen > 0):
            return net
    raise RuntimeError("no free /24 in 10.254.0.0/16")


def build(net, roles):
    """The bridge namespace and one namespace per role, each joined to the
    bridge by a veth pair, and the root namespace's own veth pair."""
    hosts = list(net.hosts())
    for ns in NS.values():
        ip("netns", "add", ns)
        made.append(ns)
        ip("link", "set", "lo", "up", ns=ns)
    ip("link", "add", "br0", "type", "bridge", ns=NS["sw"])
    ip("link", "set", "br0", "up", ns=NS["sw"])
    addrs = {}
    for i, who in enumerate(["root"] + list(roles)):
        near, far = (ROOT_IF if who == "root" else f"dy{who[0]}{PID}"), f"dyb{who[0]}{PID}"
        ip("link", "add", near, "type", "veth", "peer", "name", far)
        ip("link", "set", far, "netns", NS["sw"])
        ip("link", "set", far, "master", "br0", "up", ns=NS["sw"])
        ns = None if who == "root" else NS[who]
        if ns:
            ip("link", "set", near, "netns", ns)
        ip("addr", "add", f"{hosts[i]}/{net.prefixlen}", "dev", near, ns=ns)
        ip("link", "set", near, "up", ns=ns)
        addrs[who] = (str(hosts[i]), near)
    return addrs


def rx_bytes(ns, ifname):
    out = subprocess.run(["ip", "netns", "exec", ns, "cat",
                          f"/sys/class/net/{ifname}/statistics/rx_bytes"],
                         capture_output=True, text=True, timeout=10).stdout
    return int(out) if out.strip().isdigit() else -1


def why_not():
    """Why namespaces cannot be made here, or None."""
    if os.geteuid() != 0:
        return "not root"
    if not shutil.which("ip"):
        return "no ip(8) (iproute2)"
    probe = f"{PREFIX}-probe-{PID}"
    p = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True,
                       timeout=20)
    if p.returncode:
        return f"ip netns add: {p.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True, timeout=20)
    return None


def wrap(role):
    """The command prefix that runs a process in role's namespace."""
    return () if role == "root" else ("ip", "netns", "exec", NS[role])


def setup(roles):
    letters = [r[0] for r in roles] + ["r"]
    assert len(set(letters)) == len(letters), "roles need distinct first letters, not r"
    NS.update({k: f"{PREFIX}-{k}-{PID}" for k in ["sw"] + list(roles)})
    atexit.register(cleanup)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # run.sh's timeout: clean up too
    why = why_not()
    if why:
        d.skip("network namespaces", why)
        d.finish()
    stale_cleanup()
    try:
        return build(subnet(), roles)
    except (RuntimeError, OSError, subprocess.SubprocessError) as e:
        cleanup()
        d.skip("network namespaces", f"could not build them: {e}")
        d.finish()
