"""planner_slurm - dyn planner --connector slurm and scripts/slurm/dyn.sbatch
on a real single-node Slurm that the test starts itself: munged on a
private socket and key, slurmctld and slurmd on loopback with private
ports, state and log directories (a slurm.conf in the test's temporary
directory, SLURM_CONF for every Slurm command).  Every job is cancelled
and every daemon stopped at exit.

Checked against Slurm's own view (squeue --steps) and the frontend's:
  a planner in a batch job (load mode, 1..3 mock workers, 1 s interval)
  starts 1 worker as a job step named dyn-planner-PID-wN, and the
  frontend sees 1 worker;
  that step cancelled behind the planner's back (scancel JOB.STEP): it is
  counted (dyn_planner_worker_failures_total 1) and a new step replaces it;
  8 clients: more than one step, the frontend sees them; back to 1 client:
  back to 1 step, the others drained (SIGTERM through scancel) and exited;
  every request answered 200 with a finished completion;
  SIGTERM to the batch job: the planner stops its steps, none is left,
  and its log has no sanitizer report (make test SAN=1);
  scripts/slurm/dyn.sbatch with a profile: its frontend (frontend.url)
  sees a prefill and a decode worker, both job steps, and answers a
  completion; cancelled, it leaves no step;
  bad input: a worker command that fails under srun is reported (exit
  status 127) and counted (1, 2, 3 failures so far), and after the third
  that died within 10 s of its start the planner stops: the batch job ends
  with exit code 1 and the planner's log names the command;
  --connector slurm outside an allocation, with a node list scontrol
  cannot read, or without --worker-cmd is refused with a clear error.
SKIP when the Slurm or munge programs are missing or not root.
"""
import atexit
import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "pylib"))
import dynproc as d  # noqa: E402
import plannerproc as pp  # noqa: E402

PROGS = ["munged", "munge", "slurmctld", "slurmd", "sbatch", "srun", "squeue", "scancel",
         "scontrol", "sinfo"]
os.environ["PATH"] += ":/usr/sbin:/sbin"
missing = [p for p in PROGS if not shutil.which(p)]
if missing or os.geteuid() != 0:
    d.skip("all", f"missing {' '.join(missing)} (make deps)" if missing else "not root")
    d.finish()

sl = os.path.join(d.tmp, "slurm")
for sub in ("ctld", "spool", "log"):
    os.makedirs(os.path.join(sl, sub))
os.chmod(d.tmp, 0o755)	# munged wants its socket's directories searchable
conf = os.path.join(sl, "slurm.conf")
os.environ["SLURM_CONF"] = conf
for k in [k for k in os.environ if k.startswith("SLURM_") and k != "SLURM_CONF"]:
    del os.environ[k]	# a test run inside a Slurm job: not that job
daemons = []


def free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def slurm(*args, timeout=20):
    return subprocess.run(list(args), capture_output=True, text=True, timeout=timeout)


def steps(job=None):
    """{step id: name} of the running steps (of job), batch steps left out."""
    args = ["squeue", "--steps", "--noheader", "--format=%i %j"] + (["--jobs", job] if job else [])
    out = slurm(*args).stdout.split("\n")
    return dict(line.split(" ", 1) for line in out
                if " " in line and not line.split(" ", 1)[0].endswith(".batch"))


@atexit.register
def _stop_slurm():	# before dynproc's cleanup (atexit runs in reverse)
    if daemons and daemons[-1].poll() is None:
        try:
            slurm("scancel", "--full", "--user", "root")
            d.wait_until(lambda: not slurm("squeue", "--noheader").stdout.strip(), timeout=20)
        except subprocess.TimeoutExpired:
            pass
    for p in reversed(daemons):
        if p.poll() is None:
            p.terminate()
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def finish():	# Slurm stopped before dynproc removes the directory it runs in
    _stop_slurm()
    d.finish()


def daemon(args, name):
    log = open(os.path.join(sl, "log", name + ".out"), "w")
    daemons.append(subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT))


key = os.path.join(sl, "munge.key")
with open(key, "wb") as f:
    f.write(os.urandom(1024))
os.chmod(key, 0o600)
sock = os.path.join(sl, "munge.sock")
daemon(["munged", "-F", "-f", "--socket", sock, "--key-file", key, "--pid-file",
        os.path.join(sl, "munged.pid"), "--seed-file", os.path.join(sl, "munge.seed"),
        "--log-file", os.path.join(sl, "log", "munged.log")], "munged")
d.wait_until(lambda: os.path.exists(sock), timeout=10)
node = socket.gethostname().split(".")[0]
ctld_port, d_port = free_ports(2)
with open(conf, "w") as f:
    f.write(f"""ClusterName=dyntest
SlurmctldHost={node}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={d_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket={sock}
CredType=cred/munge
StateSaveLocation={sl}/ctld
SlurmdSpoolDir={sl}/spool
SlurmctldPidFile={sl}/ctld.pid
SlurmdPidFile={sl}/slurmd.pid
SlurmctldLogFile={sl}/log/slurmctld.log
SlurmdLogFile={sl}/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
ReturnToService=2
KillWait=5
NodeName={node} NodeAddr=127.0.0.1 CPUs=2 RealMemory=1000 State=UNKNOWN
PartitionName=debug Nodes={node} Default=YES MaxTime=INFINITE State=UP
""")
daemon(["slurmctld", "-D", "-i", "-f", conf], "slurmctld")
daemon(["slurmd", "-D", "-N", node, "-f", conf], "slurmd")
up = d.wait_until(lambda: slurm("sinfo", "--noheader", "--format=%T").stdout.strip() == "idle",
                  timeout=30, step=0.3)
if not d.check("slurm_node_idle", up, slurm("sinfo").stdout + slurm("sinfo").stderr):
    for n in ("slurmctld.log", "slurmd.log", "slurmctld.out", "slurmd.out"):
        p = os.path.join(sl, "log", n)
        if os.path.exists(p):
            print(f"--- {n}\n" + open(p).read()[-1500:])
    finish()

f = d.frontend()
env = dict(os.environ, DYN_STORE=d.store, DYN_LOG=os.environ.get("DYN_LOG", "warn"))


def fe_workers(role="agg", url=f.url):
    return d.metric(d.http_get(url + "/metrics")[1], "dyn_frontend_workers", role=role) or 0


def submit(name, script, extra_env=None):
    """sbatch a script (text): (job id, stdout path, stderr path)."""
    path = os.path.join(d.tmp, name + ".sh")
    with open(path, "w") as fh:
        fh.write(script)
    out, err = os.path.join(d.tmp, name + ".out"), os.path.join(d.tmp, name + ".err")
    r = subprocess.run(["sbatch", "--parsable", "--nodes=1", f"--output={out}",
                        f"--error={err}", path], capture_output=True, text=True, timeout=20,
                       env=dict(env, **(extra_env or {})))
    if r.returncode:
        raise RuntimeError(f"sbatch: {r.stderr}")
    return r.stdout.strip().split(";")[0], out, err


def read(path):
    try:
        with open(path) as fh:
            return fh.read()
    except OSError:
        return ""


def decisions(path):
    return [json.loads(x) for x in read(path).split("\n") if x.startswith("{")]


def job_state(job):
    return slurm("squeue", "--noheader", "--format=%T", "--jobs", job).stdout.strip()


def planner_job(name, wcmd):
    return submit(name, "#!/bin/sh\nexec " + shlex.join([
        d.DYN, "planner", "--frontend", f.url, "--connector", "slurm", "--worker-cmd", wcmd,
        "--adjustment-interval", "1", "--queue-high", "2", "--queue-low", "0.5",
        "--min-workers", "1", "--max-workers", "3", "--system-port", "0"]) + "\n")


def failures(err):
    m = re.search(r"system port (\d+)", read(err))
    if not m:
        return None
    return d.metric(d.http_get(f"http://127.0.0.1:{m.group(1)}/metrics")[1],
                    "dyn_planner_worker_failures_total")


# ---- (a) the connector: steps up and down ----------------------------------
wcmd = (f"{d.DYN} serve --model {d.MODEL} --engine mock --system-port 0 --lease-ttl 3000 "
        "--speedup-ratio 1")
job, out, err = planner_job("planner", wcmd)


def ours():
    return {k: v for k, v in steps(job).items() if v.startswith("dyn-planner-")}


d.check("one_step_at_start", d.wait_until(lambda: len(ours()) == 1 and fe_workers() == 1,
                                          timeout=30), (steps(), fe_workers(), read(err)[-800:]))
first = ours()
if first:
    slurm("scancel", next(iter(first)))
    time.sleep(4)	# its record's lease (3 s) expires
d.check("cancelled_step_replaced", first and d.wait_until(
    lambda: len(ours()) == 1 and not set(ours()) & set(first) and fe_workers() == 1,
    timeout=20), (first, ours(), read(err)[-800:]))
d.check("cancelled_step_counted", d.wait_until(lambda: failures(err) == 1, timeout=5),
        (failures(err), read(err)[-800:]))

load = pp.Load(f.url, 8, {"model": "stories260K", "prompt": "one two three",
                         "max_tokens": 200, "ignore_eos": True})
load.start(9)
most = [0]


def more():
    most[0] = max(most[0], len(ours()))
    return most[0] >= 2 and fe_workers() >= 2


d.check("steps_scale_up", d.wait_until(more, timeout=20, step=0.3),
        (ours(), fe_workers(), decisions(out)[-3:]))
load.drop()
d.check("steps_scale_down", d.wait_until(lambda: len(ours()) == 1 and fe_workers() == 1,
                                         timeout=30, step=0.3),
        (ours(), fe_workers(), [x.get("workers") for x in decisions(out)[-5:]]))
time.sleep(1)
load.stop()
bad = load.failed()
print(f"{len(load.results)} requests, {len(bad)} failed, at most {most[0]} steps")
d.check("no_failed_request", len(load.results) > 8 and not bad, (len(load.results), bad[:3]))
# srun ends 0 when its task drained and exited; killed, it would not
d.check("drained_through_scancel", "drained and exited (exit status 0)" in read(err) and
        "failed; ending its srun" not in read(err), read(err)[-800:])

slurm("scancel", "--signal=TERM", "--batch", job)
d.check("planner_stops_its_steps", d.wait_until(lambda: not job_state(job), timeout=40),
        (job_state(job), steps()))
d.check("planner_clean_under_sanitizers", "Sanitizer" not in read(err), read(err)[-1500:])
d.check("no_step_left", not steps(), steps())

# ---- (c) bad input -----------------------------------------------------------
r = subprocess.run([d.DYN, "planner", "--frontend", f.url, "--connector", "slurm",
                    "--worker-cmd", "true"], capture_output=True, text=True, timeout=20,
                   env={k: v for k, v in env.items() if not k.startswith("SLURM_JOB")})
d.check("outside_allocation_refused", r.returncode == 1 and
        "not inside a Slurm allocation" in r.stderr, (r.returncode, r.stderr))

r = subprocess.run([d.DYN, "planner", "--frontend", f.url, "--connector", "slurm",
                    "--worker-cmd", "true"], capture_output=True, text=True, timeout=20,
                   env=dict(env, SLURM_JOB_ID="1", SLURM_JOB_NODELIST="node[9-1]"))
d.check("bad_nodelist_refused", r.returncode == 1 and "finds no node" in r.stderr,
        (r.returncode, r.stderr))
r = d.run_offline("planner", "--frontend", f.url, "--connector", "slurm")
d.check("slurm_needs_worker_cmd", r.returncode == 2 and "--worker-cmd" in r.stderr, r.stderr)

badcmd = "/nonexistent/dyn-serve --model x"
job, out, err = planner_job("badcmd", badcmd)
d.check("failing_srun_reported", d.wait_until(
    lambda: "exited unasked (exit status 127; 1 failures so far)" in read(err), timeout=20),
    read(err)[-800:])
ended = d.wait_until(lambda: not job_state(job), timeout=40)
if not ended:
    slurm("scancel", job)
    d.wait_until(lambda: not job_state(job), timeout=20)
e = read(err)
exit_code = re.search(r"ExitCode=(\d+):", slurm("scontrol", "show", "job", job).stdout)
d.check("failing_srun_counted", all(f"exit status 127; {k} failures so far" in e
                                    for k in (1, 2, 3)), e[-1200:])
d.check("quick_failures_stop_planner", ended and exit_code and exit_code.group(1) == "1" and
        "connector slurm failed: the worker command failed 3 times in a row" in e and
        "(last: exit status 127): " + badcmd in e,
        (ended, exit_code and exit_code.group(0), e[-1200:]))

# ---- (b) scripts/slurm/dyn.sbatch end to end ---------------------------------
profile = os.path.join(d.tmp, "profile.json")
with open(profile, "w") as fh:
    json.dump({"version": 1, "model": "stories260K", "engine": "mock",
               "prefill": [{"isl": 16, "ttft_ms": 5, "tokens_per_s": 3000},
                           {"isl": 1024, "ttft_ms": 100, "tokens_per_s": 10000}],
               "decode": [{"concurrency": 1, "itl_ms": 5, "tokens_per_s": 200},
                          {"concurrency": 16, "itl_ms": 10, "tokens_per_s": 1600}]}, fh)
sdir = os.path.join(d.tmp, "sb")
etcd_port, peer_port, http_port = free_ports(3)
script = os.path.join(d.TOP, "scripts", "slurm", "dyn.sbatch")
job, out, err = submit("dyn_sbatch", read(script), {
    "DYNSLURM_DYN": d.DYN, "DYNSLURM_MODEL": d.MODEL, "DYNSLURM_ENGINE": "mock",
    "DYNSLURM_DIR": sdir, "DYNSLURM_ETCD_PORT": str(etcd_port),
    "DYNSLURM_ETCD_PEER_PORT": str(peer_port),
    "DYNSLURM_HTTP_PORT": str(http_port), "DYNSLURM_PROFILE": profile,
    "DYNSLURM_INTERVAL": "1", "DYNSLURM_MAX_WORKERS": "2",
    "DYNSLURM_WORKER_ARGS": "--lease-ttl 3000"})
urlf = os.path.join(sdir, "frontend.url")
d.wait_until(lambda: read(urlf).strip(), timeout=30)
url = read(urlf).strip()
print(read(out).strip())
ok = url and d.wait_until(lambda: fe_workers("prefill", url) >= 1 and
                          fe_workers("decode", url) >= 1, timeout=30, step=0.3)
d.check("sbatch_prefill_and_decode_steps", ok and len(steps(job)) >= 2,
        (url, steps(job), read(err)[-800:], read(os.path.join(sdir, "frontend.log"))[-500:]))
st, a = d.post_json((url or f.url) + "/v1/completions",
                    {"model": "stories260K", "prompt": "one two three", "max_tokens": 8})
d.check("sbatch_frontend_answers", st == 200 and a["choices"][0]["finish_reason"] in
        ("length", "stop"), (st, a))
slurm("scancel", job)
d.check("sbatch_job_ends_clean", d.wait_until(lambda: not job_state(job), timeout=40) and
        not steps(), (job_state(job), steps()))
finish()
