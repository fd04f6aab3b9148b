"""planner_local - the live `dyn planner` with the local connector: it
starts echo workers (100 ms per token) from --worker-cmd behind a
frontend, reads the frontend's /metrics every second and scales in load
mode (queue-high 2, queue-low 0.5, 1..3 workers; dyn-planner(1)).

Checked against the test's own clock and counts:
  with no load it starts the minimum, 1 worker (the frontend sees 1);
  that worker killed (SIGKILL; 1 s lease): a new one is started and the
  frontend sees 1 again;
  a ramp to 8 clients in a loop (3 s requests): a decision of 2 or more
  workers within two intervals (+1 s slack for a loaded machine) of the
  ramp's start, and the frontend then sees more than 1 worker;
  the drop to 1 client: back to 1 worker (frontend's count), the others
  drained (SIGTERM: dyn-serve(1)) and exited;
  every request of the run answered 200 with a finished completion: none
  failed while workers were drained;
  SIGTERM to the planner: it exits 0 and every worker it started is gone.
Bad input: --connector local without --worker-cmd.
"""
import os
import re
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "pylib"))
import dynproc as d  # noqa: E402
import plannerproc as pp  # noqa: E402

f = d.frontend()


def fe_workers():
    return d.metric(d.http_get(f.url + "/metrics")[1], "dyn_frontend_workers", role="agg")


wcmd = f"{d.DYN} serve --model {d.MODEL} --engine echo --system-port 0 --lease-ttl 1000"
pl = pp.Planner(["--frontend", f.url, "--connector", "local", "--worker-cmd", wcmd,
                 "--adjustment-interval", "1", "--queue-high", "2", "--queue-low", "0.5",
                 "--min-workers", "1", "--max-workers", "3"],
                env={"DYN_TOKEN_ECHO_DELAY_MS": "100",
                     "DYN_LOG": os.environ.get("DYN_LOG", "warn")})
seen = pl.seen	# (time read, decision)
d.check("starts_minimum", d.wait_until(lambda: fe_workers() == 1, timeout=20), seen[-3:])


def started():
    return [int(p) for p in re.findall(r"started worker (\d+)", pl.err())]


first = started()
if first:
    os.kill(first[0], signal.SIGKILL)
    time.sleep(2)	# its record's lease (1 s) expires: the frontend forgets it
d.check("crashed_worker_replaced", len(first) == 1 and d.wait_until(
    lambda: len(started()) == 2 and fe_workers() == 1, timeout=15), (first, started()))

load = pp.Load(f.url, 8, {"model": "stories260K", "prompt": "one two three",
                         "max_tokens": 30})
t_ramp = load.start(8)
d.wait_until(lambda: any(x.get("workers", 0) >= 2 for _, x in seen), timeout=10)
ups = [ts for ts, x in seen if x.get("workers", 0) >= 2]
print(f"scale-up decision {ups[0] - t_ramp:.2f} s after the ramp" if ups else "no scale-up")
d.check("scales_up_in_two_intervals", ups and ups[0] - t_ramp <= 3.0,
        f"{ups[0] - t_ramp:.2f} s" if ups else "never")
d.check("more_workers_serve", d.wait_until(lambda: fe_workers() >= 2, timeout=15),
        fe_workers())
load.drop()
t_drop = time.time()
down = d.wait_until(lambda: fe_workers() == 1, timeout=25)
print(f"back to 1 worker {time.time() - t_drop:.2f} s after the drop")
d.check("scales_down", down, (fe_workers(), [x.get("workers") for _, x in seen[-5:]]))
time.sleep(2)	# the trickle keeps running while the drained workers finish
load.stop()
bad = load.failed()
print(f"{len(load.results)} requests, {len(bad)} failed")
d.check("no_failed_request", len(load.results) > 8 and not bad, (len(load.results), bad[:3]))

pl.p.send_signal(signal.SIGTERM)
try:
    rc = pl.p.wait(timeout=40)
except subprocess.TimeoutExpired:
    rc = None
log = pl.err()
pids = [int(p) for p in re.findall(r"started worker (\d+)", log)]


def alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False


d.check("drained_on_scale_down", "drained and exited" in log, log[-500:])
d.check("planner_exits", rc == 0, (rc, log[-500:]))
d.check("workers_gone", len(pids) >= 2 and not any(alive(p) for p in pids), pids)
d.check("frontend_sees_none", d.wait_until(lambda: not fe_workers(), timeout=15),
        fe_workers())

r = d.run_offline("planner", "--frontend", f.url, "--connector", "local")
d.check("local_needs_worker_cmd", r.returncode == 2 and "--worker-cmd" in r.stderr, r.stderr)
d.finish()
