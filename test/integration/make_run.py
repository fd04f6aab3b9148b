"""make_run - `make run` (scripts/run.sh) end to end, as a user runs it.

The script runs in its own process group, on 127.0.0.1, with a private
file store.  Checked from the outside: it prints a ready message with curl
lines that work as printed; a greedy completion through its frontend is
the model's published reference text (../shared/models/stories260K/
expected_greedy_from_bos.txt, never dyn's own output); Ctrl-C (SIGINT to
the group) or SIGTERM stops both dyn processes and exits 0; a model given
as a relative two-part folder (mm/stories260K, not a hub id) is served
under the name the worker registers; a model without a chat template gets
no chat curl line (every line printed works); a worker that stops on its
own after ready (SIGTERM to it alone) makes the script say so and exit
non-zero; a taken port or a missing model makes it exit non-zero with a
clear message and no process left behind.
"""
import json
import os
import pty
import re
import select
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "pylib"))
import dynproc as d  # noqa: E402

RUN_SH = os.path.join(d.TOP, "scripts", "run.sh")
NAME = "stories260K"
with open(os.path.join(d.MODEL, "expected_greedy_from_bos.txt")) as fh:
    WANT = fh.read()
GREEDY_TOKENS = 200  # BOS + 199 generated = the reference's 200 positions


def group_members(pgid):
    """Live (non-zombie) processes in process group pgid: {pid: cmdline}."""
    out = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                stat = fh.read()
            fields = stat[stat.rindex(")") + 2:].split()
            if fields[0] == "Z" or int(fields[2]) != pgid:
                continue
            with open(f"/proc/{entry}/cmdline", "rb") as fh:
                out[int(entry)] = fh.read().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, ValueError):
            continue
    return out


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as fh:
            stat = fh.read()
        return stat[stat.rindex(")") + 2] != "Z"
    except OSError:
        return False


class Run:
    """sh scripts/run.sh DYN [MODEL] in a new session (its own group)."""

    def __init__(self, model=None, cwd=d.TOP, port=0, tag="run", extra_env=None):
        env = dict(os.environ, DYN_STORE="file://" + os.path.join(d.tmp, f"store-{tag}"),
                   PORT=str(port), DYN_LOG=os.environ.get("DYN_LOG", "warn"), **(extra_env or {}))
        env.pop("HTTP_HOST", None)  # the default is what is tested
        self.err = open(os.path.join(d.tmp, f"{tag}.err"), "w+")
        args = ["sh", RUN_SH, d.DYN] + ([model] if model else [])
        self.p = subprocess.Popen(args, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                                  stdout=subprocess.PIPE, stderr=self.err, text=True,
                                  start_new_session=True)
        self.lines = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        runs.append(self)

    def _read(self):
        for line in self.p.stdout:
            self.lines.append(line)

    def out(self):
        return "".join(self.lines)

    def stderr(self):
        self.err.flush()
        self.err.seek(0)
        return self.err.read()[-3000:]

    def wait_ready(self, timeout=20):
        """True once the ready message is out: its last line is the chat curl
        line, or the note that the model has no chat template."""
        def ready():
            out = self.out()
            return "Ready:" in out and ('"stream":true}' in out or "no chat template" in out)
        d.wait_until(lambda: ready() or self.p.poll() is not None, timeout)
        time.sleep(0.1)  # the reader thread may still be taking the last lines
        return ready()

    def dyn_children(self):
        return {pid: c for pid, c in group_members(self.p.pid).items() if pid != self.p.pid}

    def wait_exit(self, timeout=20):
        try:
            return self.p.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def kill(self):
        try:
            os.killpg(self.p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.p.wait()


runs = []


def curl_commands(text):
    """The printed curl commands, each as one shell command line."""
    joined = text.replace("\\\n", " ")
    return [ln.strip() for ln in joined.splitlines() if ln.strip().startswith("curl ")]


def post(url, body, timeout=30):
    req = urllib.request.Request(url, data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.loads(r.read())


def greedy_ok(base, name):
    r = post(base + "/v1/completions", {"model": name, "prompt": "", "temperature": 0,
                                        "max_tokens": GREEDY_TOKENS})
    return r["choices"][0]["text"] == WANT, repr(r["choices"][0]["text"][:80])


def stopped_cleanly(run, sig, to_group, what):
    kids = run.dyn_children()
    d.check(f"{what}: a worker and a frontend run under the script",
            sorted(c.split()[1] for c in kids.values() if " serve " in c or " frontend " in c)
            == ["frontend", "serve"], str(kids))
    if to_group:
        os.killpg(run.p.pid, sig)
    else:
        os.kill(run.p.pid, sig)
    rc = run.wait_exit(45)  # the worker drains for at most 30 s
    d.check(f"{what}: exit status 0", rc == 0, f"status {rc}: {run.stderr()}")
    gone = d.wait_until(lambda: not any(alive(p) for p in kids), 5)
    d.check(f"{what}: both dyn processes are gone", gone,
            str({p: c for p, c in kids.items() if alive(p)}))
    d.check(f"{what}: nothing left in its process group", not group_members(run.p.pid),
            str(group_members(run.p.pid)))


def make_run_on_a_terminal():
    """`make run PORT=0` in a pseudo-terminal, as a person types it; Ctrl-C
    (the terminal's interrupt character) once it is ready."""
    env = dict(os.environ, DYN_STORE="file://" + os.path.join(d.tmp, "store-make"),
               DYN_LOG="warn", MAKEFLAGS="")
    env.pop("HTTP_HOST", None)
    pid, fd = pty.fork()
    if pid == 0:
        os.chdir(d.TOP)
        os.execvpe("make", ["make", "--no-print-directory", "run", "PORT=0",
                            "SAN=" + os.environ.get("SAN", "0")], env)
    out = b""
    end = time.time() + 120
    while b'"stream":true}' not in out and time.time() < end:
        r, _, _ = select.select([fd], [], [], 0.5)
        if r:
            try:
                out += os.read(fd, 65536)
            except OSError:
                break
    ready = b'"stream":true}' in out
    d.check("make run on a terminal: ready", ready, repr(out[-500:]))
    os.write(fd, b"\x03")
    status = None
    end = time.time() + 45
    while time.time() < end:
        r, _, _ = select.select([fd], [], [], 0.2)
        if r:
            try:
                out += os.read(fd, 65536)
            except OSError:
                pass
        got, st = os.waitpid(pid, os.WNOHANG)
        if got:
            status = os.waitstatus_to_exitcode(st)
            break
    if status is None:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    os.close(fd)
    d.check("make run on a terminal: Ctrl-C exits 0", ready and status == 0,
            f"status {status}: {out[-300:]!r}")


def main():
    # 1. The default model, on a chosen free port; Ctrl-C stops it.
    port = d.free_port()
    run = Run(port=port, tag="default")
    ok = run.wait_ready()
    d.check("default model: ready message with curl lines", ok,
            f"status {run.p.poll()}; out {run.out()!r}; err {run.stderr()}")
    if ok:
        out = run.out()
        d.check("ready message names the model and the port",
                f"Ready: {NAME} at http://127.0.0.1:{port}" in out, out)
        cmds = curl_commands(out)
        d.check("two curl commands printed", len(cmds) == 2, str(cmds))
        for cmd in cmds:
            r = subprocess.run(["sh", "-c", cmd + " -sS --max-time 30"], capture_output=True,
                               text=True, timeout=40)
            if "/v1/completions" in cmd:
                try:
                    body = json.loads(r.stdout)
                    good = (body["model"] == NAME and body["choices"][0]["text"] != "" and
                            0 < body["usage"]["completion_tokens"] <= 100)
                except (ValueError, KeyError, IndexError, TypeError):
                    good = False
                d.check("printed completions curl works as printed", good,
                        f"rc {r.returncode} {r.stdout[:300]!r} {r.stderr[:300]!r}")
            else:
                d.check("printed chat curl streams to [DONE]",
                        r.returncode == 0 and r.stdout.rstrip().endswith("data: [DONE]") and
                        '"chat.completion.chunk"' in r.stdout, f"{r.stdout[-300:]!r}")
        m = re.search(r"curl (http://\S+)/v1/completions .*?-d '(\{.*?\})'", out.replace("\\\n", " "))
        body = json.loads(m.group(2)) if m else {}
        good, why = greedy_ok(m.group(1), body.get("model")) if m else (False, out)
        d.check("greedy completion from BOS through its frontend is the reference text",
                good, why)
        d.check("listens on loopback only by default, and says so",
                "Listening on 127.0.0.1 only" in out, out)
        m = re.search(r"export DYN_STORE=(\S+)", out)
        d.check("prints the DYN_STORE line of its private store", m is not None, out)
        if m:
            env = dict(os.environ, DYN_STORE=m.group(1))
            r = subprocess.run([d.DYN, "rpc", "ls"], env=env, capture_output=True, text=True,
                               timeout=20)
            d.check("dyn rpc ls with the printed DYN_STORE lists the worker",
                    r.returncode == 0 and "generate" in r.stdout, r.stdout + r.stderr)
        stopped_cleanly(run, signal.SIGINT, True, "Ctrl-C (SIGINT to the group)")
    else:
        run.kill()

    # 1b. `make run` itself on a terminal: Ctrl-C exits 0 (make must not
    # die of the signal and report 130).
    make_run_on_a_terminal()

    # 1c. No ../shared next to the working folder: a small hub model is
    # served instead, and the script says which (offline here, so the
    # worker then fails on the empty hub cache, with a clear message).
    lone = os.path.join(d.tmp, "lone", "repo")
    os.makedirs(lone)
    run = Run(cwd=lone, tag="lone", extra_env={"HF_HUB_OFFLINE": "1",
                                               "HF_HUB_CACHE": os.path.join(d.tmp, "empty-hub")})
    rc = run.wait_exit(30)
    err = run.stderr()
    d.check("no ../shared: says it serves the small hub model instead",
            "serving the hub model HuggingFaceTB/SmolLM2-135M-Instruct" in err, err)
    d.check("no ../shared, offline: the worker's failure is shown, exit non-zero",
            rc not in (None, 0) and "make run: the worker exited" in err, f"status {rc}: {err}")
    if rc is None:
        run.kill()

    # 2. A relative two-part folder (not a hub id), from another directory,
    # on any free port (PORT=0: the script reads the one the frontend got).
    os.makedirs(os.path.join(d.tmp, "mm"))
    os.symlink(d.MODEL, os.path.join(d.tmp, "mm", NAME))
    run = Run("mm/" + NAME, cwd=d.tmp, port=0, tag="relative")
    ok = run.wait_ready()
    d.check("relative folder mm/stories260K: ready", ok,
            f"status {run.p.poll()}; out {run.out()!r}; err {run.stderr()}")
    if ok:
        m = re.search(r"Ready: (\S+) at (http://127\.0\.0\.1:\d+)\.", run.out())
        d.check("relative folder: served as stories260K (what the worker registered)",
                m is not None and m.group(1) == NAME, run.out())
        if m:
            good, why = greedy_ok(m.group(2), m.group(1))
            d.check("relative folder: greedy completion is the reference text", good, why)
        stopped_cleanly(run, signal.SIGTERM, False, "SIGTERM to the script")
    else:
        run.kill()

    # 3. A model without a chat template (a copy of stories260K whose
    # tokenizer_config.json lacks one): only lines that work are printed.
    # Then its worker stops on its own (SIGTERM to the worker alone): the
    # script says so, stops the frontend and exits non-zero.
    nochat = os.path.join(d.tmp, "nochat", NAME)
    os.makedirs(nochat)
    for f in os.listdir(d.MODEL):
        if f != "tokenizer_config.json":
            os.symlink(os.path.join(d.MODEL, f), os.path.join(nochat, f))
    with open(os.path.join(d.MODEL, "tokenizer_config.json")) as fh:
        cfg = json.load(fh)
    cfg.pop("chat_template", None)
    with open(os.path.join(nochat, "tokenizer_config.json"), "w") as fh:
        json.dump(cfg, fh)
    run = Run(nochat, port=0, tag="nochat")
    ok = run.wait_ready()
    d.check("no chat template: ready", ok,
            f"status {run.p.poll()}; out {run.out()!r}; err {run.stderr()}")
    if ok:
        out = run.out()
        cmds = curl_commands(out)
        d.check("no chat template: no chat curl line, one completions line",
                len(cmds) == 1 and "/v1/completions" in cmds[0], str(cmds))
        for cmd in cmds:
            r = subprocess.run(["sh", "-c", cmd + " -sS -f --max-time 30"], capture_output=True,
                               text=True, timeout=40)
            try:
                good = r.returncode == 0 and json.loads(r.stdout)["choices"][0]["text"] != ""
            except (ValueError, KeyError, IndexError, TypeError):
                good = False
            d.check("no chat template: every printed curl line works", good,
                    f"{cmd}: rc {r.returncode} {r.stdout[:300]!r} {r.stderr[:300]!r}")
        kids = run.dyn_children()
        workers = [p for p, c in kids.items() if " serve " in c]
        d.check("worker stops on its own: one worker in the script's group", len(workers) == 1,
                str(kids))
        if workers:
            os.kill(workers[0], signal.SIGTERM)
            rc = run.wait_exit(45)
            err = run.stderr()
            d.check("worker stops on its own: non-zero exit", rc not in (None, 0),
                    f"status {rc}")
            d.check("worker stops on its own: says so", "make run: the worker stopped" in err, err)
            gone = d.wait_until(lambda: not any(alive(p) for p in kids), 5)
            d.check("worker stops on its own: the frontend is stopped too", gone,
                    str({p: c for p, c in kids.items() if alive(p)}))
            d.check("worker stops on its own: nothing left in its process group",
                    not group_members(run.p.pid), str(group_members(run.p.pid)))
    if run.p.poll() is None:
        run.kill()

    # 4. The port is taken: non-zero exit, says so, leaves nothing behind.
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen()
    taken = blocker.getsockname()[1]
    run = Run(port=taken, tag="taken")
    rc = run.wait_exit(20)
    blocker.close()
    err = run.stderr()
    d.check("port taken: non-zero exit", rc not in (None, 0), f"status {rc}")
    d.check("port taken: a clear message",
            "make run: the frontend exited" in err and "already in use" in err, err)
    d.check("port taken: no ready message", "Ready" not in run.out(), run.out())
    d.check("port taken: no process left", not group_members(run.p.pid),
            str(group_members(run.p.pid)))
    if rc is None:
        run.kill()

    # 5. A model that does not exist: the same.
    run = Run(os.path.join(d.tmp, "no-such-model"), tag="missing")
    rc = run.wait_exit(20)
    err = run.stderr()
    d.check("missing model: non-zero exit", rc not in (None, 0), f"status {rc}")
    d.check("missing model: a clear message",
            "not found" in err and "make run: the worker exited" in err, err)
    d.check("missing model: no process left", not group_members(run.p.pid),
            str(group_members(run.p.pid)))
    if rc is None:
        run.kill()


try:
    main()
except Exception as e:  # report, then clean up
    d.check("no unexpected error", False, repr(e))
finally:
    for r in runs:
        if r.p.poll() is None:
            r.kill()
        else:  # the script is gone; make sure its group is too
            try:
                os.killpg(r.p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
d.finish()
