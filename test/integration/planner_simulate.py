"""planner_simulate - `dyn planner --simulate` on a small trace and profile
whose outcome is worked out by hand from the model in dyn-planner(1).

Profile: prefill (100 tok, 20 ms, 5000 tok/s), (1000, 100, 10000); decode
(1 seq, 10 ms, 100 tok/s), (10, 20, 500), (50, 60, 800).  Trace: 30
requests of ISL 1000, OSL 2 over the first second, one more at 2.5 s.
Targets TTFT 200 ms, ITL 15 ms, disaggregated, 1..10 workers, interval 1 s.
  t=1: 30 req/s; prefill one alone 100 ms, a worker may be 1 - 100/200 = 0.5
       busy: 5000 tok/s of 30000 -> 6; decode c* = 5.5, 300 tok/s of 60 -> 1
  t=2: no arrival: 1 + 1;  t=3 ends the replay after the last arrival.
  worker-seconds 2 + 7 + 2 = 11.
  TTFT: on the first second's one prefill server each request takes 100 ms
  and they arrive every 33.3 ms: request k (0-based) has TTFT
  100 (k + 1) - 33.3 k = 100 + 66.7 k <= 200 for k = 0, 1 only; the last
  request (2.5 s, one server again) waits for the backlog of 30 x 100 ms:
  TTFT 3000 + 100 - 2500 = 600.  2 of 31.  ITL: each decodes one more token
  alone (10 ms <= 15): 31 of 31.
That is with --headroom 0 (the mean load).  With the default, 95:
  t=1: prefill arrivals within the 0.2 s TTFT target Poisson of mean 6,
       95th percentile 10 (P(X <= 9) = 0.9161, P(X <= 10) = 0.9574), a
       worker serves 5000 x 0.2 / 1000 = 1 of them: 10; decode L = 0.2 x 5.5
       = 1.1 sequences, 95th percentile 3 (P(X <= 2) = 0.9004, P(X <= 3) =
       0.9743): 3 / 5.5 -> 1.  11 is over the 10 workers: prefill's share
       10 / 10.545, round(9.48) = 9, decode 1.  Worker-seconds 2 + 10 + 2 = 14.
       The backlog stays on the first server (each request took the server
       free first at its arrival): the same attainment.
Bad input: --simulate without --profile, a broken profile, a TTFT no worker can meet
(said in the decision, the maximum planned), a --headroom of 100 (no percentile).
"""
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "pylib"))
import dynproc as d  # noqa: E402

prof = os.path.join(d.tmp, "profile.json")
with open(prof, "w") as f:
    json.dump({"version": 1, "model": "m", "engine": "mock",
               "prefill": [{"isl": 100, "ttft_ms": 20, "tokens_per_s": 5000},
                           {"isl": 1000, "ttft_ms": 100, "tokens_per_s": 10000}],
               "decode": [{"concurrency": 1, "itl_ms": 10, "tokens_per_s": 100},
                          {"concurrency": 10, "itl_ms": 20, "tokens_per_s": 500},
                          {"concurrency": 50, "itl_ms": 60, "tokens_per_s": 800}]}, f)
trace = os.path.join(d.tmp, "trace.jsonl")
with open(trace, "w") as f:
    for k in range(30):
        f.write(json.dumps({"timestamp": k * 1000 / 30, "input_length": 1000,
                            "output_length": 2, "hash_ids": [k]}) + "\n")
    f.write(json.dumps({"timestamp": 2500, "input_length": 1000, "output_length": 2,
                        "hash_ids": [99]}) + "\n")


def planner(*args):
    return subprocess.run([d.DYN, "planner", *args], capture_output=True, text=True,
                          timeout=60)


base = ["--simulate", trace, "--profile", prof, "--ttft", "200", "--itl", "15", "--disagg",
        "--min-workers", "1", "--max-workers", "10", "--adjustment-interval", "1"]
r = planner(*base, "--headroom", "0")
d.check("simulate_runs", r.returncode == 0, r.stderr)
if r.returncode == 0:
    lines = [json.loads(x) for x in r.stdout.splitlines()]
    dec, summ = lines[:-1], lines[-1]["summary"]
    d.check("simulate_decisions", [(x["t_s"], x["prefill"], x["decode"]) for x in dec] ==
            [(1, 6, 1), (2, 1, 1)], r.stdout)
    d.check("simulate_inputs_logged", dec[0]["observed"]["rate"] == 30 and
            dec[0]["predicted"]["isl"] == 1000 and dec[0]["capacity"]["prefill_tokens_per_s"] == 5000,
            json.dumps(dec[0]))
    d.check("simulate_worker_seconds", summ["worker_seconds"] == 11 and summ["duration_s"] == 3,
            json.dumps(summ))
    d.check("simulate_attainment", summ["requests"] == 31 and
            abs(summ["ttft_attainment"] - 2 / 31) < 1e-3 and summ["itl_attainment"] == 1 and
            abs(summ["sla_attainment"] - 2 / 31) < 1e-3, json.dumps(summ))

r = planner(*base)
lines = [json.loads(x) for x in r.stdout.splitlines()] if r.returncode == 0 else [{}]
dec, summ = lines[:-1], lines[-1].get("summary", {})
d.check("headroom_decisions", [(x["t_s"], x["prefill"], x["decode"]) for x in dec] ==
        [(1, 9, 1), (2, 1, 1)] and dec[0]["over_budget"], r.stdout + r.stderr)
d.check("headroom_logged", dec and dec[0]["headroom"] == {
    "quantile": 0.95, "prefill_requests": 6, "prefill_sized": 10, "decode_sequences": 1.1,
    "decode_sized": 3}, json.dumps(dec[:1]))
d.check("headroom_worker_seconds", summ.get("worker_seconds") == 14 and
        abs(summ.get("sla_attainment", 0) - 2 / 31) < 1e-3, json.dumps(summ))

r = planner("--simulate", trace)
d.check("simulate_needs_profile", r.returncode == 2 and "--simulate needs --profile" in r.stderr,
        r.stderr)
bad = os.path.join(d.tmp, "bad.json")
with open(bad, "w") as f:
    f.write('{"version": 1, "prefill": []}')
r = planner("--simulate", trace, "--profile", bad)
d.check("simulate_bad_profile", r.returncode == 1 and "\"prefill\" must be a non-empty" in r.stderr,
        r.stderr)
r = planner("--simulate", trace, "--profile", prof, "--ttft", "50", "--max-workers", "4",
            "--adjustment-interval", "1")
first = json.loads(r.stdout.splitlines()[0]) if r.returncode == 0 else {}
d.check("simulate_infeasible", first.get("infeasible") is True and first.get("workers") == 4 and
        "TTFT target 50.0 ms" in first.get("why", ""), r.stdout + r.stderr)
r = planner(*base, "--headroom", "100")
d.check("headroom_100_refused", r.returncode == 2 and "--headroom: 100 is out of range" in
        r.stderr, r.stderr)
d.finish()
