"""etcdproc - a private etcd cluster for the integration tests: members on
free loopback ports with their data under a temporary directory, killed
at exit (and with the test: PR_SET_PDEATHSIG).  Short raft timings make
etcd's smallest lease TTL one second.  tls=(cert, key, ca): clients
connect over https; host: the address members listen on (another
namespace's processes reach the root namespace's bridge address)."""
import atexit
import ctypes
import json
import os
import shutil
import signal
import ssl
import subprocess
import tempfile
import time
import urllib.request

from dynproc import free_port

ETCD = shutil.which("etcd")
ETCDCTL = shutil.which("etcdctl")
_members = []


def _die_with_parent():
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


class Member:
    def __init__(self, name, top, tls=None, host="127.0.0.1"):
        self.name, self.cport, self.pport = name, free_port(), free_port()
        self.host = host
        self.dir = os.path.join(top, name)
        self.tls = tls
        self.client = f"{'https' if tls else 'http'}://{host}:{self.cport}"
        self.peer = f"http://127.0.0.1:{self.pport}"
        self.p = None
        _members.append(self)

    def start(self, cluster, state="new"):
        self.log = open(self.dir + ".log", "a")
        self.p = subprocess.Popen(
            [ETCD, "--name", self.name, "--data-dir", self.dir,
             "--listen-client-urls", self.client, "--advertise-client-urls", self.client,
             "--listen-peer-urls", self.peer, "--initial-advertise-peer-urls", self.peer,
             "--initial-cluster", cluster, "--initial-cluster-state", state,
             "--heartbeat-interval", "10", "--election-timeout", "100"] +
            (["--cert-file", self.tls[0], "--key-file", self.tls[1]] if self.tls else []),
            stdout=self.log, stderr=self.log, preexec_fn=_die_with_parent)

    def kill(self):
        if self.p and self.p.poll() is None:
            self.p.kill()
            self.p.wait()

    def up(self):
        try:
            req = urllib.request.Request(self.client + "/v3/maintenance/status", b"{}")
            ctx = ssl.create_default_context(cafile=self.tls[2]) if self.tls else None
            with urllib.request.urlopen(req, timeout=1, context=ctx) as r:
                return "leader" in json.loads(r.read())
        except OSError:
            return False


class Cluster:
    def __init__(self, n=1, timeout=20, tls=None, host="127.0.0.1"):
        self.top = tempfile.mkdtemp(prefix="dyn-etcd-")
        self.tls = tls
        self.members = [Member(f"m{i}", self.top, tls, host) for i in range(n)]
        self.spec = ",".join(f"{m.name}={m.peer}" for m in self.members)
        for m in self.members:
            m.start(self.spec)
        self.wait_up(self.members, timeout)

    def wait_up(self, members, timeout=20):
        end = time.time() + timeout
        while time.time() < end:
            if all(m.up() for m in members):
                return
            time.sleep(0.1)
        raise RuntimeError("etcd did not start: " + open(members[0].dir + ".log").read()[-2000:])

    def restart(self, m, timeout=20):
        m.start(self.spec, "existing")
        self.wait_up([m], timeout)

    def url(self, members=None, params=""):
        ms = members or self.members
        return "etcd://" + ",".join(f"{m.host}:{m.cport}" for m in ms) + params

    def endpoints(self):
        return ",".join(m.client for m in self.members if m.p and m.p.poll() is None)

    def ctl(self, *args, timeout=10, check=True):
        """etcdctl against the live members; its stdout."""
        ca = ["--cacert", self.tls[2]] if self.tls else []
        r = subprocess.run([ETCDCTL, "--endpoints", self.endpoints(), *ca, *args],
                           capture_output=True, text=True, timeout=timeout,
                           env=dict(os.environ, ETCDCTL_API="3"))
        if check and r.returncode:
            raise RuntimeError(f"etcdctl {' '.join(args)}: {r.stderr}")
        return r.stdout

    def stop(self):
        for m in self.members:
            m.kill()
        shutil.rmtree(self.top, ignore_errors=True)


@atexit.register
def _cleanup():
    for m in _members:
        m.kill()
