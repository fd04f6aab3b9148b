#!/usr/bin/env python3
"""bench_sse.py - dyn bench measured against a scripted SSE server.

The server (test/fixtures/sse_server.py) streams OpenAI-style chunks on a
known schedule (first token 50 ms after the request, then one every 10 ms)
and logs when it actually wrote each request's chunks.  dyn bench must
report what the server did within 2 ms (TTFT, ITL, TPOT, E2E; in the median,
with 10 ms allowed for one stalled moment of a shared test machine) and the
server's own output throughput within 2%; count errors by kind (HTTP 500, mid-stream
disconnect, connection refused); replay a trace on its timestamps; build
prompts with exact token counts from a tokenizer (checked with Hugging Face
tokenizers), for later turns of conversations too; take the model from
GET /v1/models when --model is not given; stop cleanly on SIGINT/SIGTERM
(requests in flight drain within --grace, then are cancelled; a partial
report and JSON; exit 128 + signal; a second signal exits at once); and
write JSON, a comparison report and an SVG that parse.

Also: arrivals held by a concurrency cap are sent in order, each as the
request it arrived as, with its scheduled time; input tokens are the
server's usage; warm-up requests are sent but left out, and share no
prompt block with the measured ones; --duration, --prompts, --api-key,
--num-prefix-groups, --isl-stddev, --sweep request-rate, goodput on ITL;
the report's ratios; the first error message of each kind under the
table; no CPU warning for runs too short to judge; bench_vs_aiperf.sh
fails (no figures) when it cannot start dyn.

And: --url as host:port, the SDK base URL .../v1 (or .../v1/) or a full
endpoint reaches exactly /v1/chat/completions (the fixture serves exact
paths only); a run without a success writes null latencies and the
report shows '-'; an unwritable --json, an --api-key with control
characters and a non-finite --goodput stop it before any request; 200
replies that are no stream count as api_error / not_sse; a line without
end is cut at 1 MiB as a stream_error; the live progress line on a pty.
"""
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "pylib"))
import dynproc as d  # noqa: E402

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DYN = os.environ.get("DYN_BIN", os.path.join(TOP, "dyn"))
SERVER = os.path.join(TOP, "test", "fixtures", "sse_server.py")
MODELS = os.path.join(os.path.dirname(TOP), "shared", "models")
TMP = tempfile.mkdtemp(prefix="dyn-bench-")
failed = 0
procs = []


buffered = None   # a list while timed() runs a test


def result(name, ok, why=""):
    global failed
    line = ("PASS: bench_sse/%s" % name) if ok else ("FAIL: bench_sse/%s: %s" % (name, why))
    if buffered is not None:
        buffered.append((ok, line))
        return
    if not ok:
        failed += 1
    print(line)
    sys.stdout.flush()


def timed(test):
    """Run a timing-sensitive test; if any check fails, run it once more
    and keep the second attempt.  A real timing bug fails twice; a test
    machine that stalled a process for a moment does not (the stall is
    reported on stderr)."""
    global buffered, failed
    for attempt in (1, 2):
        buffered = []
        try:
            ret = test()
        finally:
            lines, buffered = buffered, None
        if all(ok for ok, _ in lines) or attempt == 2:
            break
        print("%s: retrying after %s" % (test.__name__,
              "; ".join(l for ok, l in lines if not ok)), file=sys.stderr)
    for ok, line in lines:
        failed += 0 if ok else 1
        print(line)
    sys.stdout.flush()
    return ret


def is_num(*xs):
    return all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in xs)


def close(a, b, tol):
    return abs(a - b) <= tol


servers_started = 0


def start_server(name, *args):
    # A fresh log per server: a retried test must not read the first
    # attempt's requests.
    global servers_started
    servers_started += 1
    log = os.path.join(TMP, "%s-%d.log" % (name, servers_started))
    p = subprocess.Popen([sys.executable, SERVER, "--log", log] + list(args),
                         stdout=subprocess.PIPE, text=True)
    procs.append(p)
    line = p.stdout.readline()
    port = int(line.split()[1])
    return port, log


def read_log(log):
    with open(log) as f:
        return [json.loads(x) for x in f if x.strip()]


def bench(port, *args, json_name=None, check=True):
    cmd = [DYN, "bench", "--url", "http://127.0.0.1:%d" % port, "--model", "m", "--no-progress"]
    out = None
    if json_name:
        out = os.path.join(TMP, json_name)
        cmd += ["--json", out]
    cmd += list(args)
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if check and p.returncode != 0:
        raise RuntimeError("dyn bench exited %d: %s" % (p.returncode, p.stderr.strip()[-400:]))
    doc = json.load(open(out)) if out and os.path.exists(out) else None
    return p, doc


def wait_for(fn, timeout=10, step=0.01):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if fn():
            return True
        time.sleep(step)
    return False


def count_lines(path):
    try:
        with open(path) as f:
            return sum(1 for x in f if x.strip())
    except FileNotFoundError:
        return 0


def start_bench(port, json_name, *args):
    """dyn bench in the background (for tests that signal it)."""
    out = os.path.join(TMP, json_name)
    cmd = [DYN, "bench", "--url", "http://127.0.0.1:%d" % port, "--model", "m", "--no-progress",
           "--json", out] + list(args)
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    procs.append(p)
    return p, out


def finish_bench(p, timeout=30):
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate()
    return out, err


def test_schedule():
    port, log = start_server("sched", "--ttft-ms", "50", "--itl-ms", "10")
    p, doc = bench(port, "--concurrency", "4", "--num-requests", "40", "--isl", "32",
                   "--osl", "20", json_name="sched.json")
    agg = doc["runs"][0]["aggregate"]
    srv = read_log(log)
    s_ttft = statistics.median((r["first"] - r["recv"]) * 1000 for r in srv)
    s_tput = sum(r["tokens"] for r in srv) / (max(r["last"] for r in srv) - min(r["recv"] for r in srv))
    result("all 40 requests complete", agg["completed"] == 40 and agg["errors"] == 0,
           json.dumps(agg)[:300])
    result("TTFT p50 = 50 ms schedule within 2 ms (%.2f)" % agg["ttft_ms"]["p50"],
           close(agg["ttft_ms"]["p50"], 50, 2))
    result("TTFT p50 = server-side TTFT within 2 ms (%.2f vs %.2f)" % (agg["ttft_ms"]["p50"], s_ttft),
           close(agg["ttft_ms"]["p50"], s_ttft, 2))
    result("ITL p50 and mean = 10 ms within 2 ms (%.2f, %.2f)" % (agg["itl_ms"]["p50"], agg["itl_ms"]["mean"]),
           close(agg["itl_ms"]["p50"], 10, 2) and close(agg["itl_ms"]["mean"], 10, 2))
    result("TPOT mean = 10 ms within 2%% (%.3f)" % agg["tpot_ms"]["mean"],
           close(agg["tpot_ms"]["mean"], 10, 0.2))
    # E2E sums 20 server-side sleeps, so a loaded machine makes the
    # server itself late: hold dyn bench to what the server did, and the
    # server to its schedule more loosely.
    s_e2e = statistics.median((r["last"] - r["recv"]) * 1000 for r in srv)
    result("E2E p50 = server-side E2E within 2 ms (%.2f vs %.2f)" % (agg["e2e_ms"]["p50"], s_e2e),
           close(agg["e2e_ms"]["p50"], s_e2e, 2))
    result("E2E p50 = 50 + 19 x 10 ms within 5 ms (%.2f)" % agg["e2e_ms"]["p50"],
           close(agg["e2e_ms"]["p50"], 240, 5))
    result("output throughput = server's within 2%% (%.1f vs %.1f tok/s)" % (agg["output_token_throughput"], s_tput),
           abs(agg["output_token_throughput"] / s_tput - 1) <= 0.02)
    recs = doc["runs"][0]["records"]
    result("one record per request with 19 ITL gaps each",
           len(recs) == 40 and all(len(r["itl_ms"]) == 19 and r["output_tokens"] == 20 for r in recs))
    result("output tokens from server usage", agg["output_tokens"]["mean"] == 20 and
           all(r["usage_completion_tokens"] == 20 for r in recs))
    bodies = [r["body"] for r in srv]
    result("requests stream with usage, max_tokens, ignore_eos",
           all(b["stream"] and b["stream_options"]["include_usage"] and b["max_tokens"] == 20
               and b["ignore_eos"] and b["min_tokens"] == 20 for b in bodies))
    result("human table printed", "TTFT (ms)" in p.stdout and "Output token throughput" in p.stdout)
    return doc


def test_errors():
    port, log = start_server("err", "--ttft-ms", "5", "--itl-ms", "1", "--pattern", "ok,500,drop,ok")
    p, doc = bench(port, "--concurrency", "1", "--num-requests", "20", "--osl", "8",
                   json_name="err.json")
    first_out = p.stdout
    agg = doc["runs"][0]["aggregate"]
    kinds = agg["errors_by_kind"]
    result("errors by kind: 5 http_500, 5 disconnect, 10 ok (%s)" % kinds,
           kinds == {"http_500": 5, "disconnect": 5} and agg["completed"] == 10)
    recs = doc["runs"][0]["records"]
    result("records carry error kind and status",
           sum(1 for r in recs if r["error"] == "http_500" and r["status"] == 500) == 5)
    port = d.free_port()
    p, doc = bench(port, "--concurrency", "2", "--num-requests", "6", json_name="refused.json",
                   check=False)
    agg = doc["runs"][0]["aggregate"] if doc else {}
    result("connection refused counted as connect errors, exit 1",
           p.returncode == 1 and agg.get("errors_by_kind") == {"connect": 6}, p.stderr[-300:])
    result("first error message of each kind under the table",
           re.search(r"^First http_500 error: .*scripted failure", first_out, re.M) is not None
           and re.search(r"^First disconnect error: ", first_out, re.M) is not None
           and re.search(r"^First connect error: \S", p.stdout, re.M) is not None,
           first_out[-400:] + p.stdout[-200:])
    # A run of a few milliseconds divides start-up CPU by almost no time.
    result("no CPU-saturation warning on a run too short to judge (%.4f s, %s%%)"
           % (agg.get("duration_s", 0), agg.get("cpu_percent")),
           "load generator used" not in p.stderr, p.stderr[-300:])


def test_trace():
    port, log = start_server("trace", "--ttft-ms", "2", "--itl-ms", "1")
    trace = os.path.join(TMP, "trace.jsonl")
    ts = [0, 100, 150, 400, 401, 700]
    hashes = [[1, 2, 3], [1, 2, 4], [1, 5], [6], [1, 2, 3], [7, 8]]
    with open(trace, "w") as f:
        for t, h in zip(ts, hashes):
            f.write(json.dumps({"timestamp": t, "input_length": 4 * len(h) - 1,
                                "output_length": 4, "hash_ids": h}) + "\n")
    p, doc = bench(port, "--trace", trace, "--fixed-schedule", "--speedup", "2", "--block-len", "4",
                   "--endpoint", "completions", json_name="trace.json")
    srv = sorted(read_log(log), key=lambda r: r["recv"])
    offs = [(r["recv"] - srv[0]["recv"]) * 1000 for r in srv]
    want = [t / 2 for t in ts]
    # dyn bench's own send times must be exact; what the server sees also
    # carries the scheduling noise of a shared 2-core test machine, so
    # it is held to 2 ms in the median and 10 ms at worst.
    recs = doc["runs"][0]["records"]
    lag = [r["start_ms"] - r["sched_ms"] for r in recs]
    result("trace requests sent at timestamp / speedup within 2 ms, never early (lag %s)"
           % ["%.2f" % x for x in lag],
           len(lag) == 6 and all(x >= 0 for x in lag) and statistics.median(lag) <= 2
           and max(lag) <= 10)
    # Offsets count from the first request the server saw; if that one was
    # late, every offset shifts, so compare after removing the median shift.
    shift = statistics.median(o - w for o, w in zip(offs, want))
    err = [abs(o - w - shift) for o, w in zip(offs, want)]
    result("server sees the trace schedule (%s)" % ["%.1f" % o for o in offs],
           len(offs) == 6 and statistics.median(err) <= 2 and max(err) <= 10)
    words = {}
    for r in srv:
        words[r["body"]["prompt"]] = r["body"]["prompt"].split()
    prompts = [r["body"]["prompt"].split() for r in srv]
    blocks = [[tuple(w[i:i + 4]) for i in range(0, len(w), 4)] for w in prompts]
    same = blocks[0][0] == blocks[1][0] == blocks[2][0] == blocks[4][0] and blocks[0][1] == blocks[1][1]
    differ = blocks[0][2] != blocks[1][2][:3] and blocks[3][0] != blocks[0][0] and blocks[0][1] != blocks[2][1]
    result("equal hash ids give equal token blocks, different ids differ", same and differ)
    result("prompt lengths follow input_length (last block cut)",
           [len(w) for w in prompts] == [4 * len(h) - 1 for h in hashes])
    result("records carry the scheduled time", [r["sched_ms"] for r in recs] == want)


def test_open_loop():
    port, log = start_server("rate", "--ttft-ms", "2", "--itl-ms", "1")
    p, doc = bench(port, "--request-rate", "20", "--arrival", "constant", "--num-requests", "8",
                   "--osl", "4", json_name="rate.json")
    recs = doc["runs"][0]["records"]
    starts = [r["start_ms"] for r in recs]
    lag = [s - 50 * i for i, s in enumerate(starts)]
    result("constant arrivals sent every 50 ms within 2 ms, never early (%s)"
           % ["%.1f" % s for s in starts],
           len(starts) == 8 and all(x >= 0 for x in lag) and statistics.median(lag) <= 2
           and max(lag) <= 10)
    srv = sorted(read_log(log), key=lambda r: r["recv"])
    gaps = [(b["recv"] - a["recv"]) * 1000 for a, b in zip(srv, srv[1:])]
    result("server sees arrivals 50 ms apart (%s)" % ["%.1f" % g for g in gaps],
           len(gaps) == 7 and statistics.median(abs(g - 50) for g in gaps) <= 2
           and all(close(g, 50, 10) for g in gaps))
    p, doc = bench(port, "--request-rate", "200", "--num-requests", "400", "--osl", "2",
                   json_name="poisson.json")
    st = [r["start_ms"] for r in doc["runs"][0]["records"]]
    gaps = [b - a for a, b in zip(st, st[1:])]
    m = statistics.mean(gaps)
    cv = statistics.pstdev(gaps) / m
    result("Poisson arrivals: mean gap 5 ms within 10%%, coefficient of variation 1 within 0.15 "
           "(%.2f ms, %.2f)" % (m, cv), close(m, 5, 0.5) and close(cv, 1, 0.15))


def test_tokenizer():
    try:
        import tokenizers
    except ImportError:
        print("SKIP: bench_sse/tokenizer: python tokenizers not installed")
        return
    for model in ("qwen3-0.6b-shape", "tinyllama-1.1b-shape"):
        d = os.path.join(MODELS, model)
        if not os.path.isdir(d):
            print("SKIP: bench_sse/tokenizer %s: model not found" % model)
            continue
        port, log = start_server("tok-" + model, "--ttft-ms", "1", "--itl-ms", "1")
        p, doc = bench(port, "--tokenizer", d, "--endpoint", "completions", "--isl", "100",
                       "--isl-stddev", "20", "--osl", "3", "--num-requests", "5",
                       "--shared-prefix-len", "30", json_name="tok.json")
        hf = tokenizers.Tokenizer.from_file(os.path.join(d, "tokenizer.json"))
        srv = read_log(log)
        counts = [len(hf.encode(r["body"]["prompt"], add_special_tokens=False).ids) for r in srv]
        recs = doc["runs"][0]["records"]
        want = sorted(r["input_tokens"] for r in recs)
        result("%s: prompt token counts exact per Hugging Face (%s vs %s)" % (model, sorted(counts), want),
               sorted(counts) == want and len(set(want)) > 1)


def test_interrupt_drains():
    """SIGINT: nothing new is sent, requests in flight complete within the
    grace, the partial report and JSON are written, exit 130."""
    recv = os.path.join(TMP, "int.recv")
    port, log = start_server("int", "--ttft-ms", "20", "--itl-ms", "10", "--recv-log", recv)
    p, out = start_bench(port, "int.json", "--concurrency", "4", "--num-requests", "1000",
                         "--osl", "60", "--grace", "10")
    # The first 4 requests have completed and their successors are in
    # flight (each takes about 0.6 s).
    ok = wait_for(lambda: count_lines(log) >= 4 and count_lines(recv) >= 8, timeout=15)
    t0 = time.monotonic()
    p.send_signal(signal.SIGINT)
    stdout, stderr = finish_bench(p)
    took = time.monotonic() - t0
    result("interrupt: exit 130 after draining (%.2f s)" % took,
           ok and p.returncode == 130 and took < 5, "rc %s: %s" % (p.returncode, stderr[-300:]))
    doc = json.load(open(out)) if os.path.exists(out) else {}
    run = (doc.get("runs") or [{}])[0]
    recs = run.get("records", [])
    agg = run.get("aggregate", {})
    srv = read_log(log)
    sent = count_lines(recv)
    result("interrupt: JSON written, interrupted and partial, none cancelled",
           doc.get("interrupted") is True and run.get("partial") is True and
           run.get("cancelled") == 0, json.dumps({k: run.get(k) for k in ("partial", "cancelled")}))
    result("interrupt: every request sent completed with all its tokens (%d sent, %d records, "
           "%d served)" % (sent, len(recs), len(srv)),
           sent == len(recs) == len(srv) and len(recs) >= 8 and agg.get("errors") == 0 and
           all(r["output_tokens"] == 60 and r["error"] is None for r in recs))
    result("interrupt: the table says PARTIAL", "PARTIAL" in stdout, stdout[:300])


def test_interrupt_grace_runs_out():
    """SIGTERM with a short grace: requests still running are cancelled
    (counted, left out of the results and of the errors), exit 143."""
    recv = os.path.join(TMP, "grace.recv")
    port, log = start_server("grace", "--ttft-ms", "20", "--itl-ms", "10", "--recv-log", recv)
    p, out = start_bench(port, "grace.json", "--concurrency", "3", "--num-requests", "100",
                         "--osl", "1000", "--grace", "0.3")
    ok = wait_for(lambda: count_lines(recv) >= 3)
    time.sleep(0.1)
    t0 = time.monotonic()
    p.send_signal(signal.SIGTERM)
    stdout, stderr = finish_bench(p)
    took = time.monotonic() - t0
    result("grace runs out: exit 143 after about the grace (%.2f s)" % took,
           ok and p.returncode == 143 and 0.25 <= took < 3, "rc %s: %s" % (p.returncode, stderr[-300:]))
    doc = json.load(open(out)) if os.path.exists(out) else {}
    run = (doc.get("runs") or [{}])[0]
    agg = run.get("aggregate", {})
    result("grace runs out: 3 cancelled, no records, no errors counted (%s)"
           % json.dumps({"cancelled": run.get("cancelled"), "errors": agg.get("errors_by_kind")}),
           doc.get("interrupted") is True and run.get("partial") is True and
           run.get("cancelled") == 3 and run.get("records") == [] and not agg.get("errors_by_kind"))
    result("grace runs out: the table names the cancelled requests",
           "PARTIAL" in stdout and "3 requests in flight cancelled" in stdout, stdout[:300])


def test_second_signal():
    """A second SIGINT while draining exits at once, with no report."""
    recv = os.path.join(TMP, "twice.recv")
    port, log = start_server("twice", "--ttft-ms", "20", "--itl-ms", "10", "--recv-log", recv)
    p, out = start_bench(port, "twice.json", "--concurrency", "2", "--num-requests", "100",
                         "--osl", "1000", "--grace", "60")
    ok = wait_for(lambda: count_lines(recv) >= 2)
    p.send_signal(signal.SIGINT)
    time.sleep(0.3)
    still = p.poll() is None
    t0 = time.monotonic()
    p.send_signal(signal.SIGINT)
    stdout, stderr = finish_bench(p)
    took = time.monotonic() - t0
    result("first signal waits for the grace; second exits at once with 130 (%.2f s)" % took,
           ok and still and p.returncode == 130 and took < 1,
           "rc %s, running after first %s: %s" % (p.returncode, still, stderr[-300:]))
    result("second signal: no report, no JSON file",
           not os.path.exists(out) and "TTFT" not in stdout, stdout[:200])


def test_model_discovery():
    port, log = start_server("models", "--ttft-ms", "1", "--itl-ms", "1", "--models", "first,second")
    out = os.path.join(TMP, "models.json")
    p = subprocess.run([DYN, "bench", "--url", "http://127.0.0.1:%d" % port, "--no-progress",
                        "--num-requests", "3", "--osl", "2", "--json", out],
                       capture_output=True, text=True, timeout=60)
    doc = json.load(open(out)) if os.path.exists(out) else {}
    srv = read_log(log)
    result("no --model: the first of GET /v1/models is sent",
           p.returncode == 0 and doc.get("model") == "first" and len(srv) == 3 and
           all(r["body"]["model"] == "first" for r in srv), p.stderr[-300:])
    port, log = start_server("nomodels", "--models", "")
    p = subprocess.run([DYN, "bench", "--url", "http://127.0.0.1:%d" % port, "--no-progress",
                        "--num-requests", "3"], capture_output=True, text=True, timeout=60)
    err = p.stderr.strip()
    result("no --model and an empty model list: exit 1, one clear line (%s)" % err,
           p.returncode == 1 and "no --model" in err and "lists no models" in err and
           len(err.splitlines()) == 1 and read_log(log) == [])
    port = d.free_port()
    p = subprocess.run([DYN, "bench", "--url", "http://127.0.0.1:%d" % port, "--no-progress",
                        "--num-requests", "3", "--timeout", "5"],
                       capture_output=True, text=True, timeout=60)
    err = p.stderr.strip()
    result("no --model and no server: exit 1 naming /v1/models (%s)" % err,
           p.returncode == 1 and "/v1/models" in err)


def test_multiturn_tokens():
    """With --tokenizer, later turns of a conversation (history resent)
    have known input token counts: the tokens of every message's text
    (chat) or of the whole prompt (completions), per Hugging Face."""
    try:
        import tokenizers
    except ImportError:
        print("SKIP: bench_sse/multi-turn tokens: python tokenizers not installed")
        return
    model = "qwen3-0.6b-shape"
    d = os.path.join(MODELS, model)
    if not os.path.isdir(d):
        print("SKIP: bench_sse/multi-turn tokens: %s not found" % model)
        return
    hf = tokenizers.Tokenizer.from_file(os.path.join(d, "tokenizer.json"))

    def ntok(text):
        return len(hf.encode(text, add_special_tokens=False).ids)

    for endpoint in ("chat", "completions"):
        port, log = start_server("turns-" + endpoint, "--ttft-ms", "1", "--itl-ms", "1")
        p, doc = bench(port, "--tokenizer", d, "--endpoint", endpoint, "--turns", "3",
                       "--isl", "20", "--osl", "4", "--num-requests", "6", "--concurrency", "2",
                       json_name="turns-%s.json" % endpoint)
        recs = doc["runs"][0]["records"]
        srv = read_log(log)
        if endpoint == "chat":
            counts = [sum(ntok(m["content"]) for m in r["body"]["messages"]) for r in srv]
        else:
            counts = [ntok(r["body"]["prompt"]) for r in srv]
        got = [r["input_tokens"] for r in recs]
        later = [r for r in recs if r["turn"] > 0]
        result("%s, 3 turns: later turns' input tokens known and exact per Hugging Face "
               "(%s vs %s)" % (endpoint, sorted(got), sorted(counts)),
               len(later) >= 2 and all(isinstance(r["input_tokens"], int) and r["input_tokens"] > 20
                                       for r in later) and sorted(got) == sorted(counts))


def test_report(sched_doc):
    port, log = start_server("sweep", "--ttft-ms", "20", "--itl-ms", "5")
    p, doc = bench(port, "--sweep", "concurrency=1,2,4", "--num-requests", "8", "--osl", "6",
                   "--goodput", "ttft=30ms", json_name="sweep.json")
    runs = doc["runs"]
    result("sweep: one run per value", [r["config"]["concurrency"] for r in runs] == [1, 2, 4])
    result("goodput counts requests meeting the SLO",
           all(r["aggregate"]["good_requests"] == r["aggregate"]["completed"] for r in runs[:1]))
    p2, doc2 = bench(port, "--num-requests", "4", "--osl", "6", "--goodput", "ttft=5ms",
                     json_name="slo.json")
    result("goodput 0 when TTFT misses the SLO", doc2["runs"][0]["aggregate"]["good_requests"] == 0)
    svg = os.path.join(TMP, "plot.svg")
    r = subprocess.run([DYN, "bench", "report", os.path.join(TMP, "sched.json"),
                        os.path.join(TMP, "sweep.json"), "--svg", svg],
                       capture_output=True, text=True, timeout=60)
    result("report exits 0 and shows ratios", r.returncode == 0 and "x)" in r.stdout
           and "TTFT p50" in r.stdout, r.stderr[-300:])
    # Every ratio is the column's value over the first column's, from the
    # JSON files themselves.
    cols = [sched_doc["runs"][0]["aggregate"]] + [x["aggregate"] for x in runs]
    bad = []
    for title, key, sub in (("TTFT p50 (ms)", "ttft_ms", "p50"), ("ITL p50 (ms)", "itl_ms", "p50"),
                            ("output throughput (tok/s)", "output_token_throughput", None),
                            ("E2E p99 (ms)", "e2e_ms", "p99")):
        line = next((l for l in r.stdout.splitlines() if l.startswith(title)), "")
        cells = re.findall(r"(-?[0-9.]+)(?: \(([0-9.]+)x\))?", line[28:])
        want = [c[key][sub] if sub else c[key] for c in cols]
        ok = len(cells) == len(want) and close(float(cells[0][0]), want[0], 0.006)
        for (v, ratio), w in zip(cells[1:], want[1:]):
            ok = ok and ratio and close(float(v), w, 0.006) and \
                close(float(ratio), w / want[0], 0.006)
        if not ok:
            bad.append("%s: %s vs %s" % (title, cells, ["%.3f" % x for x in want]))
    result("report ratios equal B/A from the JSON files", not bad, "; ".join(bad))
    png = os.path.join(TMP, "plot.png")
    r2 = subprocess.run([DYN, "bench", "report", os.path.join(TMP, "sched.json"), "--svg", png],
                        capture_output=True, text=True, timeout=60)
    result("report --svg x.png: usage error (exit 2) naming --svg, no file written",
           r2.returncode == 2 and "--svg" in r2.stderr and not os.path.exists(png),
           "rc %d: %s" % (r2.returncode, r2.stderr[-300:]))
    try:
        root = ET.parse(svg).getroot()
        lines = root.findall("{http://www.w3.org/2000/svg}polyline")
        dots = root.findall("{http://www.w3.org/2000/svg}circle")
        result("SVG parses as XML with CDF lines and throughput points",
               root.tag.endswith("svg") and len(lines) >= 8 and len(dots) >= 4)
    except Exception as e:
        result("SVG parses as XML", False, str(e))


def write_trace(name, ts, outs, hashes, in_len=None):
    path = os.path.join(TMP, name)
    with open(path, "w") as f:
        for i, (t, o, h) in enumerate(zip(ts, outs, hashes)):
            f.write(json.dumps({"timestamp": t, "input_length": in_len or 4 * len(h),
                                "output_length": o, "hash_ids": h}) + "\n")
    return path


def test_capped_arrivals():
    """Arrivals that find the --concurrency cap reached wait in line: each
    is sent once, in arrival order, as the request it arrived as, and its
    record keeps the time it was due."""
    port, log = start_server("capped", "--ttft-ms", "15", "--itl-ms", "1")
    ts = [0, 5, 10, 15, 20, 25]
    outs = [3, 4, 5, 6, 7, 8]
    trace = write_trace("capped.jsonl", ts, outs, [[2 * i, 2 * i + 1] for i in range(6)])
    p, doc = bench(port, "--trace", trace, "--fixed-schedule", "--concurrency", "1",
                   "--block-len", "4", "--endpoint", "completions", json_name="capped.json")
    srv = sorted(read_log(log), key=lambda r: r["recv"])
    seen = [r["body"]["max_tokens"] for r in srv]
    result("trace at --concurrency 1: the server saw each entry once, in order (%s)" % seen,
           seen == outs)
    recs = doc["runs"][0]["records"]
    # A missing figure (None) is a failed check, not a TypeError.
    result("trace at --concurrency 1: records are the entries with their scheduled times, "
           "sent no earlier (%s)" % [(r["sched_ms"], r["start_ms"]) for r in recs],
           len(recs) == 6 and [r["sched_ms"] for r in recs] == ts and
           [r["requested_output_tokens"] for r in recs] == outs and
           all(is_num(r["start_ms"], r["sched_ms"]) and r["start_ms"] >= r["sched_ms"]
               for r in recs) and
           recs[-1]["start_ms"] - recs[-1]["sched_ms"] > 15)
    p, doc = bench(port, "--request-rate", "200", "--arrival", "constant", "--concurrency", "1",
                   "--num-requests", "8", "--osl", "2", json_name="capped-rate.json")
    recs = doc["runs"][0]["records"]
    srv = read_log(log)[6:]
    result("--request-rate with --concurrency: 8 distinct requests, each record due every "
           "5 ms and sent no earlier (%s)" % [r["sched_ms"] for r in recs],
           len(recs) == 8 and [r["index"] for r in recs] == list(range(8)) and
           all(is_num(r["start_ms"], r["sched_ms"]) and close(r["sched_ms"], 5 * i, 1e-6) and
               r["start_ms"] >= r["sched_ms"] for i, r in enumerate(recs)) and
           len(set(json.dumps(r["body"]["messages"]) for r in srv)) == 8)


def test_input_tokens():
    """Input token figures are the server's usage.prompt_tokens (here the
    prompt's words plus 3, as a chat template would add), and the
    difference from the prompt built is reported."""
    port, log = start_server("usage-in", "--ttft-ms", "1", "--itl-ms", "1", "--template-tokens", "3")
    p, doc = bench(port, "--isl", "20", "--isl-stddev", "5", "--num-requests", "6", "--osl", "2",
                   json_name="usage-in.json")
    agg = doc["runs"][0]["aggregate"]
    srv = read_log(log)
    want = sum(r["prompt_tokens"] for r in srv)
    result("aggregate input tokens = the server's count (%s vs %d)"
           % (agg["total_input_tokens"], want),
           agg["total_input_tokens"] == want and close(agg["input_tokens"]["mean"], want / 6, 1e-3)
           and abs(agg["total_token_throughput"] * agg["duration_s"] /
                   (want + agg["total_output_tokens"]) - 1) < 1e-4)
    result("the mismatch with the prompt built is reported",
           agg["usage_input_mismatch"] == 6 and "6 of 6 requests" in p.stdout, p.stdout[-400:])


def test_warmup():
    port, log = start_server("warm", "--ttft-ms", "1", "--itl-ms", "1")
    p, doc = bench(port, "--warmup-requests", "3", "--num-requests", "5", "--concurrency", "2",
                   "--osl", "2", json_name="warm.json")
    recs = doc["runs"][0]["records"]
    result("warm-up: the server served 5 + 3 requests, 5 records (%d, %d)"
           % (count_lines(log), len(recs)),
           count_lines(log) == 8 and len(recs) == 5 and doc["runs"][0]["aggregate"]["requests"] == 5)
    # A trace: warm-up prompts share no block with the measured requests'.
    port, log = start_server("warm-trace", "--ttft-ms", "1", "--itl-ms", "1")
    hashes = [[1, 2, 3], [1, 2, 4], [1, 5], [6, 7]]
    trace = write_trace("warm.jsonl", [0, 10, 20, 30], [2, 2, 2, 2], hashes)
    p, doc = bench(port, "--trace", trace, "--warmup-requests", "2", "--concurrency", "1",
                   "--block-len", "4", "--endpoint", "completions", json_name="warm-trace.json")
    srv = sorted(read_log(log), key=lambda r: r["recv"])
    words = [r["body"]["prompt"].split() for r in srv]
    blocks = [set(tuple(w[i:i + 4]) for i in range(0, len(w), 4)) for w in words]
    measured = set().union(*blocks[2:]) if len(blocks) > 2 else set()
    result("warm-up on a trace: 2 + 4 requests; warm-up prompts share no block with the "
           "measured ones, which follow the trace",
           len(srv) == 6 and not (blocks[0] | blocks[1]) & measured and
           [len(w) for w in words[2:]] == [4 * len(h) for h in hashes])


def test_duration_prompts_key():
    port, log = start_server("dur", "--ttft-ms", "1", "--itl-ms", "1")
    p, doc = bench(port, "--request-rate", "20", "--arrival", "constant", "--duration", "1",
                   "--osl", "2", json_name="dur.json")
    n = len(doc["runs"][0]["records"])
    result("--duration 1 at 20 req/s: about 20 requests (%d)" % n,
           14 <= n <= 26 and count_lines(log) == n)
    texts = ['Hello, "world"!', "na\u00efve caf\u00e9 \u2014 \u2713 emoji \U0001F600",
             "line one\nline two\ttab", "  spaces  around  "]
    path = os.path.join(TMP, "prompts.jsonl")
    with open(path, "w") as f:
        for i, t in enumerate(texts):
            f.write(json.dumps({"prompt": t, "max_tokens": 3 + i} if i == 2 else
                               {"text": t, "output_length": 3 + i}) + "\n")
    for endpoint in ("chat", "completions"):
        port, log = start_server("prompts-" + endpoint, "--ttft-ms", "1", "--itl-ms", "1")
        p, doc = bench(port, "--prompts", path, "--endpoint", endpoint, "--concurrency", "1",
                       "--api-key", "sk-test-42", json_name="prompts.json")
        srv = read_log(log)
        got = [r["body"]["messages"][-1]["content"] if endpoint == "chat" else r["body"]["prompt"]
               for r in srv]
        result("--prompts (%s): each prompt verbatim at the server, with its output length"
               % endpoint, got == texts and [r["body"]["max_tokens"] for r in srv] == [3, 4, 5, 6],
               repr(got))
        result("--api-key (%s): the server got Authorization: Bearer KEY" % endpoint,
               len(srv) == 4 and all(r["auth"] == "Bearer sk-test-42" for r in srv),
               repr([r["auth"] for r in srv]))
    p, doc = bench(port, "--num-requests", "1", "--osl", "1", json_name="nokey.json")
    result("no --api-key: no Authorization header", read_log(log)[-1]["auth"] is None)


def test_prefix_groups_and_lengths():
    port, log = start_server("groups", "--ttft-ms", "1", "--itl-ms", "1")
    p, doc = bench(port, "--endpoint", "completions", "--isl", "24", "--shared-prefix-len", "8",
                   "--num-prefix-groups", "3", "--num-requests", "9", "--concurrency", "1",
                   "--osl", "1", json_name="groups.json")
    words = [r["body"]["prompt"].split() for r in sorted(read_log(log), key=lambda r: r["recv"])]
    pre = [tuple(w[:8]) for w in words]
    rest = [tuple(w[8:]) for w in words]
    result("--num-prefix-groups 3: request i's 8-word prefix is group i mod 3's; groups differ",
           len(words) == 9 and all(pre[i] == pre[i % 3] for i in range(9)) and
           len(set(pre)) == 3 and len(set(rest)) == 9)
    for dist in ("normal", "uniform"):
        port, log = start_server("isl-" + dist, "--ttft-ms", "1", "--itl-ms", "1")
        p, doc = bench(port, "--endpoint", "completions", "--isl", "100", "--isl-stddev", "20",
                       "--length-dist", dist, "--num-requests", "80", "--concurrency", "8",
                       "--osl", "1", json_name="isl.json")
        lens = [len(r["body"]["prompt"].split()) for r in read_log(log)]
        m, sd = statistics.mean(lens), statistics.stdev(lens) if len(lens) > 1 else 0
        result("--isl 100 --isl-stddev 20 (%s): prompt words mean %.1f, stddev %.1f"
               % (dist, m, sd), len(lens) == 80 and close(m, 100, 8) and 14 <= sd <= 26)


def test_rate_sweep_goodput():
    port, log = start_server("rsweep", "--ttft-ms", "1", "--itl-ms", "5")
    p, doc = bench(port, "--sweep", "request-rate=40,80", "--arrival", "constant",
                   "--num-requests", "6", "--osl", "4", json_name="rsweep.json")
    runs = doc["runs"]
    ok = [r["config"]["request_rate"] for r in runs] == [40, 80] and \
        [r["label"] for r in runs] == ["request-rate=40", "request-rate=80"]
    for run, gap in zip(runs, (25, 12.5)):
        recs = run["records"]
        starts = [r["start_ms"] for r in recs]
        ok = ok and len(recs) == 6 and \
            all(close(r["sched_ms"], gap * i, 1e-6) for i, r in enumerate(recs)) and \
            close(statistics.median(b - a for a, b in zip(starts, starts[1:])), gap, gap * 0.4)
    result("--sweep request-rate=40,80: two open-loop runs at 25 and 12.5 ms gaps", ok,
           json.dumps([[r["sched_ms"] for r in run["records"]] for run in runs])[:300])
    counts = []
    for slo in ("itl=40ms", "itl=1ms", "ttft=2s,itl=40ms"):
        p, doc = bench(port, "--num-requests", "4", "--osl", "6", "--goodput", slo,
                       json_name="gp.json")
        agg = doc["runs"][0]["aggregate"]
        counts.append(agg["good_requests"])
        if slo == "itl=40ms":
            good_rate = agg["goodput"] * agg["duration_s"]
    result("goodput on ITL (5 ms gaps): itl=40ms all 4, itl=1ms none, with ttft all 4 (%s)"
           % counts, counts == [4, 0, 4] and close(good_rate, 4, 0.01))


def test_aiperf_script_needs_dyn():
    """bench_vs_aiperf.sh compares on a dyn deployment only: when dyn
    cannot be started it fails and reports no figures."""
    env = dict(os.environ, DYN_BIN="/bin/false", AIPERF="/bin/true")
    p = subprocess.run(["sh", os.path.join(TOP, "test", "bench", "bench_vs_aiperf.sh")],
                       capture_output=True, text=True, timeout=60, env=env)
    out = p.stdout + p.stderr
    result("bench_vs_aiperf.sh without a dyn deployment: fails, no FIGURE lines (rc %d)"
           % p.returncode, p.returncode != 0 and "FIGURE" not in out and "scripted" not in out,
           out[-300:])


def read_paths(path):
    try:
        with open(path) as f:
            return [l.split() for l in f if l.strip()]
    except FileNotFoundError:
        return []


def test_url_forms():
    """--url: a bare host:port, the OpenAI SDK base URL .../v1 (with or
    without '/') and a full endpoint URL all reach /v1/chat/completions
    (the fixture serves exact paths only, 404 elsewhere); without --model
    the list comes from /v1/models; --endpoint completions with .../v1
    reaches /v1/completions."""
    paths = os.path.join(TMP, "paths.log")
    port, log = start_server("url", "--ttft-ms", "2", "--itl-ms", "1", "--path-log", paths)
    base = "http://127.0.0.1:%d" % port
    for url, model, endpoint, want in (
            (base, "m", "chat", ["POST /v1/chat/completions 200"]),
            (base + "/", "m", "chat", ["POST /v1/chat/completions 200"]),
            (base + "/v1", "m", "chat", ["POST /v1/chat/completions 200"]),
            (base + "/v1/", "m", "chat", ["POST /v1/chat/completions 200"]),
            (base + "/v1/chat/completions", "m", "chat", ["POST /v1/chat/completions 200"]),
            (base + "/v1/", None, "chat", ["GET /v1/models 200", "POST /v1/chat/completions 200"]),
            (base + "/v1/completions/", None, "completions",
             ["GET /v1/models 200", "POST /v1/completions 200"]),
            (base + "/v1", "m", "completions", ["POST /v1/completions 200"])):
        open(paths, "w").close()
        cmd = [DYN, "bench", "--url", url, "--no-progress", "--num-requests", "1", "--osl", "2",
               "--endpoint", endpoint] + (["--model", model] if model else [])
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        got = [" ".join(x) for x in read_paths(paths)]
        result("--url %s%s --endpoint %s: requests %s, exit 0 (got %s, rc %d)"
               % (url.replace(base, "HOST:PORT"), "" if model else " (no --model)", endpoint,
                  want, got, p.returncode),
               got == want and p.returncode == 0, p.stderr[-300:])
    # The fixture is exact: a doubled /v1 is a 404, not served.
    open(paths, "w").close()
    p = subprocess.run([DYN, "bench", "--url", base + "/v1/v1", "--model", "m", "--no-progress",
                        "--num-requests", "1", "--osl", "2"],
                       capture_output=True, text=True, timeout=60)
    got = [" ".join(x) for x in read_paths(paths)]
    result("fixture serves exact paths: /v1/v1/chat/completions gets 404, dyn bench exit 1 "
           "(%s)" % got, got == ["POST /v1/v1/chat/completions 404"] and p.returncode == 1)


def test_all_failed_stats(sched_doc):
    """A run without a successful request has no latencies: null in
    --json (not 0), and the report shows '-' with no ratio."""
    port, log = start_server("allfail", "--pattern", "500")
    p, doc = bench(port, "--num-requests", "3", "--osl", "2", json_name="allfail.json",
                   check=False)
    agg = doc["runs"][0]["aggregate"] if doc else {}
    stats = {k: agg.get(k) for k in ("ttft_ms", "itl_ms", "tpot_ms", "e2e_ms", "output_tokens")}
    result("no success: every latency statistic has n 0 and null figures, exit 1 (%s)"
           % stats.get("ttft_ms"),
           p.returncode == 1 and all(isinstance(v, dict) and v.get("n") == 0 and
                                     all(v.get(f) is None for f in ("mean", "min", "p50", "p99",
                                                                    "max"))
                                     for v in stats.values()))
    r = subprocess.run([DYN, "bench", "report", os.path.join(TMP, "sched.json"),
                        os.path.join(TMP, "allfail.json")],
                       capture_output=True, text=True, timeout=60)
    line = next((l for l in r.stdout.splitlines() if l.startswith("TTFT p50 (ms)")), "")
    cells = line[28:].split()
    want_first = sched_doc["runs"][0]["aggregate"]["ttft_ms"]["p50"] if sched_doc else None
    result("report: the all-failed column's TTFT p50 is '-' without a ratio (%r)" % line,
           r.returncode == 0 and len(cells) == 2 and cells[1] == "-" and
           is_num(want_first) and close(float(cells[0]), want_first, 0.006), r.stderr[-300:])
    # Files of earlier versions wrote 0 for a statistic without samples.
    if doc:
        old = os.path.join(TMP, "allfail-old.json")
        for k, v in doc["runs"][0]["aggregate"].items():
            if isinstance(v, dict) and v.get("n") == 0:
                for f in v:
                    if v[f] is None:
                        v[f] = 0
        json.dump(doc, open(old, "w"))
        r = subprocess.run([DYN, "bench", "report", os.path.join(TMP, "sched.json"), old],
                           capture_output=True, text=True, timeout=60)
        line = next((l for l in r.stdout.splitlines() if l.startswith("ITL p50 (ms)")), "")
        result("report: a statistic with n 0 written as 0s (older files) is '-' too (%r)" % line,
               r.returncode == 0 and line[28:].split()[1:] == ["-"], r.stderr[-300:])


def test_refused_before_run():
    """Usage errors and an unwritable --json stop dyn bench before any
    request reaches the server."""
    port, log = start_server("refuse")
    bad_json = os.path.join(TMP, "no-such-dir", "x.json")
    cases = [
        ("--json in a missing folder: exit 1 naming the file", 1,
         ["--json", bad_json, "--num-requests", "2"], bad_json),
        ("--api-key with CR LF (header injection): usage error", 2,
         ["--api-key", "k\r\nX-Injected: 1"], "--api-key"),
        ("--api-key with a tab: usage error", 2, ["--api-key", "k\tx"], "--api-key"),
        ("--goodput ttft=nan: usage error", 2, ["--goodput", "ttft=nan"], "--goodput"),
        ("--goodput ttft=inf: usage error", 2, ["--goodput", "ttft=inf"], "--goodput"),
        ("--goodput e2e=infs: usage error", 2, ["--goodput", "e2e=infs"], "--goodput"),
        ("--goodput itl=1e999ms: usage error", 2, ["--goodput", "itl=1e999ms"], "--goodput"),
    ]
    for what, rc, args, named in cases:
        p, _ = bench(port, "--osl", "2", *args, check=False)
        result("%s, no request sent (rc %d, %d requests)" % (what, p.returncode, count_lines(log)),
               p.returncode == rc and count_lines(log) == 0 and named in p.stderr,
               p.stderr[-300:])


def test_non_stream_replies():
    """A 200 reply that is not an event stream is no disconnect: an OpenAI
    error object is api_error (its message under the table), any other
    body (a non-streaming completion) is not_sse."""
    port, log = start_server("nonstream", "--ttft-ms", "2", "--itl-ms", "1",
                             "--pattern", "ok,json200,err200")
    p, doc = bench(port, "--concurrency", "1", "--num-requests", "6", "--osl", "3",
                   json_name="nonstream.json")
    agg = doc["runs"][0]["aggregate"]
    result("200 non-streaming bodies: 2 api_error, 2 not_sse, 2 ok (%s)" % agg["errors_by_kind"],
           agg["errors_by_kind"] == {"not_sse": 2, "api_error": 2} and agg["completed"] == 2)
    result("the server's error message is shown under the table",
           re.search(r"^First api_error error: .*scripted refusal", p.stdout, re.M) is not None,
           p.stdout[-400:])


def test_long_sse_line():
    """A stream that sends megabytes without a newline is ended by the
    client (the line cap, 1 MiB) as a stream_error, well before the
    server would close it or --timeout would fire."""
    port, log = start_server("longline", "--pattern", "longline")
    p, doc = bench(port, "--num-requests", "1", "--timeout", "60", json_name="longline.json",
                   check=False)
    agg = doc["runs"][0]["aggregate"] if doc else {}
    rec = doc["runs"][0]["records"][0] if doc else {}
    result("4 MiB without a newline: one stream_error naming the 1 MiB cap, exit 1 (%s, %s)"
           % (agg.get("errors_by_kind"), rec.get("error_msg")),
           p.returncode == 1 and agg.get("errors_by_kind") == {"stream_error": 1} and
           "1048576" in (rec.get("error_msg") or ""), p.stderr[-300:])


def test_progress_line():
    """The live progress line on a terminal: run under a pty for about
    2.5 s (then SIGINT) and read what was drawn: done/total, errors and
    the token rate, consistent with what the server logged."""
    import pty
    port, log = start_server("progress", "--ttft-ms", "5", "--itl-ms", "2",
                             "--pattern", "ok,ok,ok,500")
    master, slave = pty.openpty()
    cmd = [DYN, "bench", "--url", "http://127.0.0.1:%d" % port, "--model", "m",
           "--concurrency", "2", "--num-requests", "100000", "--osl", "4", "--grace", "1"]
    p = subprocess.Popen(cmd, stdin=slave, stdout=slave, stderr=slave, close_fds=True)
    procs.append(p)
    os.close(slave)
    out = b""
    end = time.monotonic() + 2.5
    signalled = False
    import select
    while True:
        if not signalled and time.monotonic() > end:
            p.send_signal(signal.SIGINT)
            signalled = True
        r, _, _ = select.select([master], [], [], 0.1)
        if r:
            try:
                b = os.read(master, 65536)
            except OSError:
                break
            if not b:
                break
            out += b
        elif p.poll() is not None and signalled:
            break
        if time.monotonic() > end + 30:
            p.kill()
            break
    os.close(master)
    p.wait()
    text = out.decode(errors="replace")
    lines = re.findall(r"\r\x1b\[K([^\r\n]*done (\d+)/(\d+)\s+errors (\d+)\s+in flight (\d+)\s+"
                       r"([0-9.]+) tok/s[^\r\n]*)", text)
    served = read_log(log)
    ok = len(lines) >= 1
    if ok:
        line, done, total, errs, inflight, toks = lines[-1]
        done, total, errs, toks = int(done), int(total), int(errs), float(toks)
        ok = (total == 100000 and 4 <= done <= len(served) and errs >= 1 and
              abs(errs - done / 4) <= 2 and toks > 0)
        why = "last line %r, %d requests served" % (line, len(served))
    else:
        why = "no progress line drawn: %r" % text[-300:]
    result("progress line on a tty: redrawn in place with done/total, errors and tok/s (%d "
           "draws)" % len(lines), ok, why)


def main():
    try:
        doc = timed(test_schedule)
        test_errors()
        timed(test_trace)
        timed(test_open_loop)
        test_tokenizer()
        test_report(doc)
        test_interrupt_drains()
        test_interrupt_grace_runs_out()
        test_second_signal()
        test_model_discovery()
        test_multiturn_tokens()
        timed(test_capped_arrivals)
        test_input_tokens()
        test_warmup()
        test_duration_prompts_key()
        test_prefix_groups_and_lengths()
        timed(test_rate_sweep_goodput)
        test_aiperf_script_needs_dyn()
        test_url_forms()
        test_all_failed_stats(doc)
        test_refused_before_run()
        test_non_stream_replies()
        test_long_sse_line()
        test_progress_line()
    except Exception as e:
        result("run", False, repr(e))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait()
    if not failed:
        shutil.rmtree(TMP, ignore_errors=True)  # kept for a look when a test failed
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
