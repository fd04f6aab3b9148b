"""gpu - for the gpu_*.py tests: is a GPU usable by the CUDA backend here?

usable() reads `dyn version`'s "CUDA backend:" line; without a GPU the
tests print one SKIP line with its reason and exit 0.
"""
import subprocess

import dynproc as d


def usable():
    """(True, line) when GPU 0 is usable, else (False, why)."""
    out = subprocess.run([d.DYN, "version"], capture_output=True, text=True).stdout
    line = next((l for l in out.splitlines() if l.startswith("CUDA backend: ")), "")
    if "GPU 0:" in line:
        return True, line
    return False, line[len("CUDA backend: "):] or "dyn version has no CUDA backend line"


def skip_without_gpu():
    ok, why = usable()
    if not ok:
        d.skip("gpu", f"no usable GPU: {why}")
        d.finish()
    print(f"  {why}", flush=True)


def gpu_memory_mib(pid):
    """Device memory used by process pid (nvidia-smi), or, where its
    processes are not listed (a container), by the whole GPU 0; None
    without nvidia-smi."""
    def query(what):
        try:
            p = subprocess.run(["nvidia-smi", f"--query-{what}", "--format=csv,noheader,nounits"],
                               capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            return []
        return [[x.strip() for x in line.split(",")] for line in p.stdout.splitlines()]
    for row in query("compute-apps=pid,used_memory"):
        if len(row) == 2 and row[0] == str(pid):
            return int(row[1])
    rows = query("gpu=memory.used")
    return int(rows[0][0]) if rows and rows[0][0].isdigit() else None
