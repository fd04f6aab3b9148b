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
import atexit
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "pylib"))
import dynproc as d  # noqa: E402

f = d.frontend()


def fe_workers():
    return d.metric(d.http_get(f.url + "/metrics")[1], "dyn_frontend_workers", role="agg")


wcmd = f"{d.DYN} serve --model {d.MODEL} --engine echo --system-port 0 --lease-ttl 1000"
env = dict(os.environ, DYN_STORE=d.store, DYN_TOKEN_ECHO_DELAY_MS="100",
           DYN_LOG=os.environ.get("DYN_LOG", "warn"))
errlog = open(os.path.join(d.tmp, "planner.err"), "w+")
pl = subprocess.Popen([d.DYN, "planner", "--frontend", f.url, "--connector", "local",
                       "--worker-cmd", wcmd, "--adjustment-interval", "1",
                       "--queue-high", "2", "--queue-low", "0.5", "--min-workers", "1",
                       "--max-workers", "3"],
                      stdout=subprocess.PIPE, stderr=errlog, env=env, text=True)
seen = []	# (time read, decision)


@atexit.register
def _stop_planner():	# SIGTERM: it stops the workers it started
    if pl.poll() is None:
        pl.terminate()
        pl.wait(timeout=70)




def read():
    for line in pl.stdout:
        try:
            seen.append((time.time(), json.loads(line)))
        except ValueError:
            pass


threading.Thread(target=read, daemon=True).start()
d.check("starts_minimum", d.wait_until(lambda: fe_workers() == 1, timeout=20), seen[-3:])



def started():
    errlog.seek(0)
    return [int(p) for p in re.findall(r"started worker (\d+)", errlog.read())]


first = started()
if first:
    os.kill(first[0], signal.SIGKILL)
    time.sleep(2)	# its record's lease (1 s) expires: the frontend forgets it
d.check("crashed_worker_replaced", len(first) == 1 and d.wait_until(
    lambda: len(started()) == 2 and fe_workers() == 1, timeout=15), (first, started()))

results = []	# (ok, detail)
stop_at = {}


def client(k):
    while time.time() < stop_at[k]:
        body = {"model": "stories260K", "prompt": "one two three", "max_tokens": 30}
        req = urllib.request.Request(f.url + "/v1/completions", json.dumps(body).encode(),
                                     {"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                a = json.loads(r.read())
                results.append((r.status == 200 and a["choices"][0]["finish_reason"]
                                in ("length", "stop"), a["choices"][0]["finish_reason"]))
        except Exception as e:  # noqa: BLE001 - any failure is the finding
            results.append((False, repr(e)))


t_ramp = time.time()
for k in range(8):
    stop_at[k] = t_ramp + 8 if k else t_ramp + 1000
clients = [threading.Thread(target=client, args=(k,)) for k in range(8)]
for t in clients:
    t.start()
d.wait_until(lambda: any(x.get("workers", 0) >= 2 for _, x in seen), timeout=10)
ups = [ts for ts, x in seen if x.get("workers", 0) >= 2]
print(f"scale-up decision {ups[0] - t_ramp:.2f} s after the ramp" if ups else "no scale-up")
d.check("scales_up_in_two_intervals", ups and ups[0] - t_ramp <= 3.0,
        f"{ups[0] - t_ramp:.2f} s" if ups else "never")
d.check("more_workers_serve", d.wait_until(lambda: fe_workers() >= 2, timeout=15),
        fe_workers())
for t in clients[1:]:
    t.join()
t_drop = time.time()
down = d.wait_until(lambda: fe_workers() == 1, timeout=25)
print(f"back to 1 worker {time.time() - t_drop:.2f} s after the drop")
d.check("scales_down", down, (fe_workers(), [x.get("workers") for _, x in seen[-5:]]))
time.sleep(2)	# the trickle keeps running while the drained workers finish
stop_at[0] = 0
clients[0].join()
bad = [r for r in results if not r[0]]
print(f"{len(results)} requests, {len(bad)} failed")
d.check("no_failed_request", len(results) > 8 and not bad, (len(results), bad[:3]))

pl.send_signal(signal.SIGTERM)
try:
    rc = pl.wait(timeout=40)
except subprocess.TimeoutExpired:
    rc = None
errlog.seek(0)
log = errlog.read()
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
