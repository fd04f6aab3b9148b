#!/usr/bin/env python3
"""cuda_fake - the CUDA backend's host code end to end, without a GPU: a
fake driver and cuBLAS (fakecuda/fake_cuda.c, built here as libcuda.so.1
and libcublas.so.13) whose "device" memory is host memory and whose
kernels and GEMMs only count and check their launch shapes.  The answers
are meaningless (nothing is computed); what is checked is what the
backend asks of the driver:

  - dyn version names the fake GPU and cuBLAS; --device auto takes it
  - dyn run, 12 greedy tokens: the module loaded is the embedded fatbin
    (the fake checks its magic); the first decode step is recorded as a
    graph and every decode step launches it (12 tokens: 1 recording, 11
    graph launches); nothing synchronous while recording; every launch
    shape is one a GPU takes; GEMMs in the backend's one form; at exit
    every allocation (device, pinned), the context and the module are
    released
  - --no-cuda-graphs: no recording, no graph launch
  - a worker answering 8 requests at once, then each alone: graphs per
    batch size, nothing leaked when it stops
  - a KV cache past --gpu-memory-utilization is an error naming the sizes
"""
import concurrent.futures
import json
import os
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "pylib"))
import dynproc as d  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
FAKE = os.path.join(d.tmp, "fake")


def build():
    os.makedirs(FAKE)
    lib = os.path.join(FAKE, "libcuda.so.1")
    subprocess.run(["cc", "-shared", "-fPIC", "-O1", "-o", lib,
                    os.path.join(HERE, "fakecuda", "fake_cuda.c")], check=True)
    shutil.copy(lib, os.path.join(FAKE, "libcublas.so.13"))


def env(report):
    """The fake libraries' environment; report: a file of this test's own
    (it is removed first)."""
    if os.path.exists(report):
        os.unlink(report)
    return dict(os.environ, LD_LIBRARY_PATH=FAKE, FAKE_CUDA_REPORT=report, DYN_LOG="warn")


def seen(report):
    """The two libraries' counters, summed."""
    total = {}
    try:
        with open(report) as f:
            for line in f:
                for k, v in json.loads(line).items():
                    total[k] = total.get(k, "") + v if isinstance(v, str) else total.get(k, 0) + v
    except (OSError, ValueError):
        return {}
    return total


def released(r):
    return (r.get("errors") == 0 and r.get("allocs") == 0 and r.get("host_allocs") == 0 and
            r.get("ctx_retained") == 0 and r.get("modules") == 0)


def main():
    v = subprocess.run([d.DYN, "version"], capture_output=True, text=True, env=env(os.path.join(d.tmp, "version.json")))
    if "built in (sm_80 sm_90)" not in v.stdout:
        d.skip("fake_gpu", "the kernels are not built in this binary")
        return
    build()
    v = subprocess.run([d.DYN, "version"], capture_output=True, text=True, env=env(os.path.join(d.tmp, "version.json")))
    line = next((l for l in v.stdout.splitlines() if l.startswith("CUDA backend")), "")
    d.check("version names the fake GPU and cuBLAS",
            "GPU 0: Fake GPU (sm_90, 16.0 GiB), cuBLAS 13.0.0 (libcublas.so.13)" in line, line)

    rep = os.path.join(d.tmp, "run.json")
    for device in ("cuda", "auto"):
        p = subprocess.run([d.DYN, "run", d.MODEL, "--device", device, "--raw", "--prompt",
                            "Once upon a time", "--max-tokens", "12", "--temperature", "0",
                            "--verbose"], capture_output=True, text=True, env=env(rep),
                           timeout=120)
        r = seen(rep)
        d.check(f"--device {device}: runs on the (fake) GPU", p.returncode == 0 and
                "engine: cuda, 1 thread, Fake GPU" in p.stderr and "no usable GPU" not in p.stderr, p.stderr[-600:])
        d.check(f"--device {device}: 1 graph recorded, launched at each of 11 decode steps",
                r.get("captures") == 1 and r.get("graph_launches") == 11 and
                r.get("captured", 0) > 0 and r.get("gemms", 0) > 0, str(r))
        d.check(f"--device {device}: valid launches, all released at exit", released(r), str(r))

    p = subprocess.run([d.DYN, "run", d.MODEL, "--device", "cuda", "--no-cuda-graphs", "--raw",
                        "--prompt", "Once upon a time", "--max-tokens", "12"],
                       capture_output=True, text=True, env=env(rep), timeout=120)
    r = seen(rep)
    d.check("--no-cuda-graphs: no graph, every kernel launched",
            p.returncode == 0 and r.get("captures") == 0 and r.get("graph_launches") == 0 and
            r.get("captured") == 0 and released(r), f"{p.stderr[-300:]} {r}")

    rep = os.path.join(d.tmp, "serve.json")
    w = d.Proc(["serve", "--model", d.MODEL, "--engine", "builtin", "--system-port", "0",
                "--device", "cuda", "--max-num-seqs", "8"],
               r"instance ([0-9a-f]{16}) .* system port (\d+)", env=env(rep), timeout=60)
    fe = d.frontend()

    def complete(i):
        return d.post_json(fe.url + "/v1/completions",
                           {"model": os.path.basename(d.MODEL), "prompt": f"{i} Once upon a",
                            "max_tokens": 6, "temperature": 0})[0]
    ok = d.wait_until(lambda: complete(0) == 200, timeout=30)
    with concurrent.futures.ThreadPoolExecutor(8) as ex:
        codes = list(ex.map(complete, range(8)))
    codes += [complete(i) for i in range(3)]
    d.check("a worker answers 8 at once and each alone", ok and codes == [200] * 11,
            f"{codes} {w.stderr()[-500:]}")
    rc = w.stop()
    r = seen(rep)
    d.check("the worker recorded graphs per batch size and launched them",
            1 <= r.get("captures", 0) <= 16 and r.get("graph_launches", 0) > r.get("captures", 0),
            str(r))
    d.check("the worker released everything when it stopped", rc == 0 and released(r),
            f"exit {rc}: {r}")

    p = subprocess.run([d.DYN, "run", d.MODEL, "--device", "cuda", "--gpu-memory-utilization",
                        "0.01", "--kv-cache-tokens", "50000000", "--prompt", "x"],
                       capture_output=True, text=True, env=env(os.path.join(d.tmp, "big.json")),
                       timeout=120)
    d.check("a KV cache past --gpu-memory-utilization is an error naming the sizes",
            p.returncode == 1 and "does not fit" in p.stderr and
            "--gpu-memory-utilization 0.01" in p.stderr, f"rc {p.returncode}: {p.stderr}")


if __name__ == "__main__":
    main()
    d.finish()
