#!/usr/bin/env python3
"""cuda_runtime - the CUDA backend where no GPU is usable: the run-time
loading of the driver fails cleanly, saying why, and nothing else breaks.

A fake libcuda.so.1, built here with cc, is put first on LD_LIBRARY_PATH
(the real driver, where there is one, comes after it):
  - none at all (a directory without it, on a machine without a driver):
    `dyn version` says "CUDA backend: built in (sm_80 sm_90); not usable
    here: no libcuda.so.1: ..."
  - a driver whose cuInit fails (CUDA_ERROR_NO_DEVICE), one with no
    device, one lacking an entry point: each reason on that line
  - `dyn run --device cuda` exits 2 with the same reason on stderr, before
    loading the model; `--device auto` runs on the CPU, says so once, and
    answers as `--device cpu` (stories260K, greedy)
A binary built without the kernels (no nvcc, CUDA=0) says "not built in"
and `--device cuda` says that.
"""
import ctypes
import os
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "pylib"))
import dynproc  # noqa: E402
from dynproc import DYN, MODEL, check, skip, tmp  # noqa: E402

SYMS = ["cuDriverGetVersion", "cuDeviceGetCount", "cuDeviceGet", "cuDeviceGetName",
        "cuDeviceGetAttribute", "cuDeviceTotalMem_v2", "cuDevicePrimaryCtxRetain",
        "cuDevicePrimaryCtxRelease_v2", "cuCtxSetCurrent", "cuModuleLoadData",
        "cuModuleUnload", "cuModuleGetFunction", "cuFuncSetAttribute", "cuLaunchKernel",
        "cuMemAlloc_v2", "cuMemFree_v2", "cuMemAllocHost_v2", "cuMemFreeHost",
        "cuMemcpyHtoD_v2", "cuMemcpyDtoH_v2", "cuMemcpyHtoDAsync_v2", "cuMemcpyDtoHAsync_v2",
        "cuMemsetD8Async", "cuMemGetInfo_v2", "cuStreamCreate", "cuStreamDestroy_v2",
        "cuStreamSynchronize", "cuStreamBeginCapture_v2", "cuStreamEndCapture",
        "cuGraphInstantiateWithFlags", "cuGraphLaunch", "cuGraphExecDestroy", "cuGraphDestroy"]

# INIT: what cuInit returns; COUNT: the devices; FULL: every entry point
FAKE = r"""
int cuInit(unsigned f) { (void)f; return INIT; }
int cuGetErrorString(int rc, const char **s) { *s = rc == 100 ? "CUDA_ERROR_NO_DEVICE" : "?"; return 0; }
#if FULL
int cuDriverGetVersion(int *v) { *v = 13000; return 0; }
int cuDeviceGetCount(int *n) { *n = COUNT; return 0; }
%s
#endif
""" % "\n".join(f"int {s}(void) {{ return 999; }}" for s in SYMS[2:])


def build_fake(name, init, count, full):
    d = os.path.join(tmp, name)
    os.makedirs(d)
    src = os.path.join(d, "fake.c")
    with open(src, "w") as f:
        f.write(FAKE)
    subprocess.run(["cc", "-shared", "-fPIC", f"-DINIT={init}", f"-DCOUNT={count}",
                    f"-DFULL={full}", "-o", os.path.join(d, "libcuda.so.1"), src], check=True)
    return d


def dyn(args, libdir, timeout=120):
    env = dict(os.environ, LD_LIBRARY_PATH=libdir, DYN_LOG="warn")
    return subprocess.run([DYN] + args, env=env, capture_output=True, text=True,
                          timeout=timeout)


def cuda_line(out):
    return next((l for l in out.splitlines() if l.startswith("CUDA backend: ")), "")


def main():
    empty = os.path.join(tmp, "empty")
    os.makedirs(empty)
    built = "built in (sm_80 sm_90)" in cuda_line(dyn(["version"], empty).stdout)
    if not built:
        line = cuda_line(dyn(["version"], empty).stdout)
        check("not_built_in_is_said", line == "CUDA backend: not built in (built without nvcc, "
              "or with CUDA=0)", line)
        r = dyn(["run", MODEL, "--device", "cuda", "--prompt", "x"], empty)
        check("not_built_in_device_cuda", r.returncode == 2 and "not built in" in r.stderr,
              f"rc {r.returncode}: {r.stderr}")
        return
    try:
        ctypes.CDLL("libcuda.so.1")
        real = True
    except OSError:
        real = False
    fakes = [("no_libcuda", empty, "not usable here: no libcuda.so.1: ")] if not real else []
    if real:
        skip("no_libcuda", "this machine has a libcuda.so.1")
    fakes += [
        ("init_fails", build_fake("init", 100, 1, 1),
         "not usable here: cuInit failed: CUDA_ERROR_NO_DEVICE"),
        ("no_device", build_fake("nodev", 0, 0, 1), "not usable here: no CUDA device (driver 13.0"),
        ("missing_symbol", build_fake("old", 0, 1, 0),
         "not usable here: libcuda.so.1 lacks cuDriverGetVersion"),
    ]
    cpu = dyn(["run", MODEL, "--device", "cpu", "--prompt", "Once", "--max-tokens", "24",
               "--temperature", "0"], empty)
    check("cpu_answers", cpu.returncode == 0 and cpu.stdout.strip(), cpu.stderr)
    for name, libdir, want in fakes:
        v = dyn(["version"], libdir)
        line = cuda_line(v.stdout)
        check(f"{name}/version", v.returncode == 0 and
              line.startswith("CUDA backend: built in (sm_80 sm_90); " + want), line)
        reason = want.split("not usable here: ")[1]
        r = dyn(["run", MODEL, "--device", "cuda", "--prompt", "x"], libdir)
        check(f"{name}/device_cuda_fails", r.returncode == 2 and
              f"dyn run: --device cuda: {reason}" in r.stderr and not r.stdout,
              f"rc {r.returncode}: {r.stderr!r}")
        a = dyn(["run", MODEL, "--device", "auto", "--prompt", "Once", "--max-tokens", "24",
                 "--temperature", "0"], libdir)
        said = a.stderr.count("--device auto: no usable GPU")
        check(f"{name}/device_auto_falls_back", a.returncode == 0 and said == 1 and
              reason in a.stderr and a.stdout == cpu.stdout,
              f"rc {a.returncode}, said {said}x: {a.stderr!r} {a.stdout!r}")
    # --backend cuda (the older spelling) and an out-of-range utilization
    r = dyn(["run", MODEL, "--backend", "cuda", "--prompt", "x"], fakes[0][1])
    check("backend_cuda_fails", r.returncode == 2 and "--device cuda:" in r.stderr, r.stderr)
    r = dyn(["run", MODEL, "--gpu-memory-utilization", "0", "--prompt", "x"], empty)
    check("utilization_range", r.returncode == 2 and "gpu-memory-utilization" in r.stderr,
          r.stderr)


if __name__ == "__main__":
    main()
    sys.exit(1 if dynproc.failed else 0)
