"""model_hub.py - `dyn model pull` / `dyn model info ORG/NAME` against a local
fake of the Hugging Face hub that serves ../shared/models/stories260K the
way huggingface.co does: the revision API, resolve URLs (large files
redirected to a "CDN" on another host name, with X-Linked-Etag and
X-Linked-Size), a gated repo (401 without the token), missing repos and
files (404), a connection cut mid-file, a server that fails until it
heals, and wrong sizes and checksums.  Checks the cache layout (blobs
named by ETag, snapshot symlinks, refs/main), resume by HTTP Range, the
error messages, HF_HUB_OFFLINE, and that huggingface_hub itself reads the
cache dyn wrote (and dyn reads one huggingface_hub wrote).
"""
import hashlib
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DYN = os.environ.get("DYN_BIN") or os.path.join(TOP, "dyn")
SRC = os.path.join(TOP, "..", "shared", "models", "stories260K")
NAME = "model_hub"
FAILED = 0


def report(name, ok, why=""):
    global FAILED
    if ok:
        print(f"PASS: {NAME}/{name}", flush=True)
    else:
        FAILED += 1
        print(f"FAIL: {NAME}/{name}: {why}", flush=True)


def skip(name, why):
    print(f"SKIP: {NAME}/{name}: {why}", flush=True)


def git_blob_sha1(data):
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


LFS = {"model.safetensors", "tokenizer.json"}
FILES = {}  # name -> bytes
for f in sorted(os.listdir(SRC)):
    with open(os.path.join(SRC, f), "rb") as fh:
        FILES[f] = fh.read()
FILES["pytorch_model.bin"] = b"not a safetensors file"
FILES["original/consolidated.00.pth"] = b"nested, not wanted"


def etag_of(name, data):
    return hashlib.sha256(data).hexdigest() if name in LFS else git_blob_sha1(data)


class Repo:
    def __init__(self, commit, files, gated=False, missing=(), bad_size=(), bad_sum=()):
        self.commit = commit
        self.files = files
        self.gated = gated
        self.missing = set(missing)      # listed, but resolve gives 404
        self.bad_size = set(bad_size)    # announced size + 1000
        self.bad_sum = set(bad_sum)      # served bytes differ from the ETag
        self.cut_after = {}              # name -> [bytes, times]: cut GETs short
        self.fail_next = {}              # name -> n: answer 503 n times
        self.ignore_range = False        # answer Range requests with 200 and the whole file
        self.wrong_range = False         # answer Range requests with 206 from another byte


def commit_hex(c):
    return (c * 40)[:40]


def split_safetensors(data):
    """Two valid safetensors files holding the tensors of data between them,
    and the weight_map of an index naming them."""
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    header.pop("__metadata__", None)
    names = sorted(header, key=lambda k: header[k]["data_offsets"][0])
    shards, weight_map = {}, {}
    for i, part in enumerate((names[:len(names) // 2], names[len(names) // 2:])):
        fname = f"model-0000{i + 1}-of-00002.safetensors"
        h, blobs, off = {}, [], 0
        for k in part:
            b, e = header[k]["data_offsets"]
            blob = data[8 + n + b:8 + n + e]
            h[k] = dict(header[k], data_offsets=[off, off + len(blob)])
            blobs.append(blob)
            off += len(blob)
            weight_map[k] = fname
        text = json.dumps(h).encode()
        text += b" " * ((8 - len(text) % 8) % 8)
        shards[fname] = struct.pack("<Q", len(text)) + text + b"".join(blobs)
    return shards, weight_map


SHARDS, WEIGHT_MAP = split_safetensors(FILES["model.safetensors"])
SHARDED = {f: d for f, d in FILES.items() if f != "model.safetensors"}
SHARDED.update(SHARDS)
SHARDED["model.safetensors.index.json"] = json.dumps(
    {"metadata": {"total_size": sum(len(d) for d in SHARDS.values())},
     "weight_map": WEIGHT_MAP}).encode()
SHARDED["consolidated.safetensors"] = FILES["model.safetensors"]  # not in the index
EVIL = dict(SHARDED)
EVIL["model.safetensors.index.json"] = json.dumps(
    {"weight_map": dict(WEIGHT_MAP, **{"model.norm.weight": "../../x.safetensors"})}).encode()

REPOS = {
    "test-org/stories260K": Repo(commit_hex("a1"), FILES),
    "test-org/gated": Repo(commit_hex("b2"), FILES, gated=True),
    "test-org/missing-file": Repo(commit_hex("c3"), FILES, missing={"model.safetensors"}),
    "test-org/flaky": Repo(commit_hex("d4"), FILES),
    "test-org/badsize": Repo(commit_hex("e5"), FILES, bad_size={"model.safetensors"}),
    "test-org/badsum": Repo(commit_hex("f6"), FILES, bad_sum={"config.json"}),
    "test-org/tagged": Repo(commit_hex("07"), FILES),
    "test-org/odd-names": Repo(commit_hex("18"), {
        "config.json": FILES["config.json"],
        "model v1+%.safetensors": FILES["model.safetensors"],
        ".hidden.safetensors": b"dot files are not fetched"}),
    "test-org/no-range": Repo(commit_hex("29"), FILES),
    "test-org/wrong-range": Repo(commit_hex("5c"), FILES),
    "test-org/sharded": Repo(commit_hex("3a"), SHARDED),
    "test-org/evil-index": Repo(commit_hex("4b"), EVIL),
}
REPOS["test-org/no-range"].ignore_range = True
REPOS["test-org/wrong-range"].wrong_range = True
TOKEN = "hf_secret_token"
LOG = []          # (method, path, range, has_auth, host)
LOG_LOCK = threading.Lock()
CDN = {}          # sha256 -> (repo, name)


class Hub(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"

    def log_message(self, *a):
        pass

    def record(self):
        with LOG_LOCK:
            LOG.append((self.command, self.path, self.headers.get("Range"),
                        self.headers.get("Authorization"), self.headers.get("Host")))

    def send(self, status, headers=(), body=b""):
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def error(self, status, code, msg):
        self.send(status, [("X-Error-Code", code), ("X-Error-Message", msg),
                           ("Content-Type", "application/json")],
                  json.dumps({"error": msg}).encode())

    def repo_for(self, org, name):
        repo = REPOS.get(f"{org}/{name}")
        if repo is None:
            self.error(404, "RepoNotFound", "Repository not found")
            return None
        if repo.gated and self.headers.get("Authorization") != f"Bearer {TOKEN}":
            self.error(401, "GatedRepo", "Access to model is restricted")
            return None
        return repo

    def do_HEAD(self):
        self.do_GET()

    def do_GET(self):
        self.record()
        parts = [urllib.parse.unquote(x) for x in self.path.split("?")[0].split("/")]
        if parts[1:3] == ["api", "models"] and len(parts) == 7 and parts[5] == "revision":
            repo = self.repo_for(parts[3], parts[4])
            if repo is None:
                return
            if parts[6] not in ("main", "v1.0", repo.commit):
                return self.error(404, "RevisionNotFound", "Invalid rev id")
            body = {"id": f"{parts[3]}/{parts[4]}", "sha": repo.commit,
                    "siblings": [{"rfilename": f} for f in sorted(repo.files)]}
            return self.send(200, [("Content-Type", "application/json")],
                             json.dumps(body).encode())
        if parts[1:3] == ["api", "models"] and len(parts) >= 7 and parts[5] == "tree":
            # The listing huggingface_hub's snapshot_download uses.
            repo = self.repo_for(parts[3], parts[4])
            if repo is None:
                return
            entries, dirs = [], set()
            for f, data in sorted(repo.files.items()):
                if "/" in f:
                    dirs.add(f.split("/")[0])
                e = {"type": "file", "path": f, "size": len(data), "oid": git_blob_sha1(data)}
                if f in LFS:
                    e["lfs"] = {"oid": etag_of(f, data), "size": len(data), "pointerSize": 130}
                entries.append(e)
            entries += [{"type": "directory", "path": d, "oid": "0" * 40, "size": 0}
                        for d in sorted(dirs)]
            return self.send(200, [("Content-Type", "application/json")],
                             json.dumps(entries).encode())
        if len(parts) >= 6 and parts[3] == "resolve":
            repo = self.repo_for(parts[1], parts[2])
            if repo is None:
                return
            fname = "/".join(parts[5:])
            if parts[4] not in ("main", "v1.0", repo.commit):
                return self.error(404, "RevisionNotFound", "Invalid rev id")
            if fname not in repo.files or fname in repo.missing:
                return self.error(404, "EntryNotFound", f"{fname} does not exist")
            data = repo.files[fname]
            etag = etag_of(fname, data)
            size = len(data) + (1000 if fname in repo.bad_size else 0)
            common = [("X-Repo-Commit", repo.commit)]
            if fname in LFS:
                CDN[etag] = (repo, fname)
                host = f"localhost:{PORT}"
                return self.send(302, common + [
                    ("X-Linked-Etag", f'"{etag}"'), ("X-Linked-Size", str(size)),
                    ("ETag", '"pointer-etag"'),
                    ("Location", f"http://{host}/cdn/{etag}?sig=xyz")])
            return self.serve(repo, fname, data, common + [("ETag", f'"{etag}"')], size)
        if parts[1] == "cdn" and len(parts) == 3 and parts[2] in CDN:
            repo, fname = CDN[parts[2]]
            return self.serve(repo, fname, repo.files[fname], [("ETag", f'"{parts[2]}"')],
                              len(repo.files[fname]))
        self.error(404, "EntryNotFound", "no such path: " + self.path)

    def serve(self, repo, fname, data, headers, size):
        if fname in repo.bad_sum:
            data = data[:-2] + b"X\n"
        if self.command == "HEAD":
            self.send_response(200)
            for k, v in headers:
                self.send_header(k, v)
            self.send_header("Content-Length", str(size))
            self.end_headers()
            return
        cut = repo.cut_after.get(fname)
        if not (cut and cut[1] > 0) and repo.fail_next.get(fname, 0) > 0:
            repo.fail_next[fname] -= 1
            return self.error(503, "Unavailable", "try again later")
        start = 0
        rng = self.headers.get("Range")
        if rng and rng.startswith("bytes=") and rng.endswith("-") and not repo.ignore_range:
            start = int(rng[6:-1])
            if repo.wrong_range:
                start -= 1
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        for k, v in headers:
            self.send_header(k, v)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if cut and cut[1] > 0:
            cut[1] -= 1
            try:
                self.wfile.write(body[:cut[0]])
                self.wfile.flush()
                self.connection.shutdown(socket.SHUT_RDWR)  # the line drops mid-file
            except OSError:
                pass  # the client hung up first (it refused the answer)
            self.close_connection = True
            return
        self.wfile.write(body)


server = ThreadingHTTPServer(("127.0.0.1", 0), Hub)
server.daemon_threads = True
PORT = server.server_address[1]
threading.Thread(target=server.serve_forever, daemon=True).start()
TMP = tempfile.mkdtemp(prefix="dyn-hub.")


def closed_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def dyn(*args, home, endpoint=None, extra_env=None, timeout=60):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("HF_", "HUGGINGFACE_", "DYN_"))}
    env.update({"HF_HOME": home, "HF_ENDPOINT": endpoint or f"http://127.0.0.1:{PORT}",
                "HF_HUB_ETAG_TIMEOUT": "5", "HF_HUB_DOWNLOAD_TIMEOUT": "5"})
    env.update(extra_env or {})
    try:
        return subprocess.run([DYN, *args], env=env, capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired as e:
        return subprocess.CompletedProcess(e.cmd, 124, e.stdout or "", "timed out")


def serve_until_listed(args, env, name, timeout):
    """Run dyn serve ARGS until the store lists name (or it exits, or
    timeout s pass), then stop it; returns (the v1/ listing, its stderr)."""
    srv = subprocess.Popen([DYN, "serve", *args], env=env, stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, text=True)
    cards, deadline = "", time.time() + timeout
    try:
        while time.time() < deadline and name not in cards and srv.poll() is None:
            cards = subprocess.run([DYN, "store", "ls", "v1/"], env=env, capture_output=True,
                                   text=True, timeout=10).stdout
            time.sleep(0.2)
    finally:
        srv.terminate()
        try:
            srv.wait(timeout=10)
        except subprocess.TimeoutExpired:
            srv.kill()
            srv.wait()
    return cards, srv.stderr.read()


def one_line(s):
    return len(s.strip().splitlines()) == 1


def requests_for(path_part):
    with LOG_LOCK:
        return [r for r in LOG if path_part in r[1]]


WANTED = ["config.json", "generation_config.json", "model.safetensors", "tokenizer.json",
          "tokenizer_config.json"]


def check_layout(name, cache, repo_id, files=WANTED):
    repo = REPOS[repo_id]
    base = os.path.join(cache, "models--" + repo_id.replace("/", "--"))
    snap = os.path.join(base, "snapshots", repo.commit)
    problems = []
    try:
        with open(os.path.join(base, "refs", "main")) as fh:
            ref = fh.read()
        if ref != repo.commit:
            problems.append(f"refs/main holds {ref!r}")
    except OSError as e:
        problems.append(f"refs/main: {e}")
    for f in files:
        p = os.path.join(snap, f)
        etag = etag_of(f, FILES[f])
        if not os.path.islink(p):
            problems.append(f"{f} is not a symlink")
            continue
        if os.readlink(p) != f"../../blobs/{etag}":
            problems.append(f"{f} -> {os.readlink(p)}")
        with open(p, "rb") as fh:
            if fh.read() != FILES[f]:
                problems.append(f"{f}: contents differ")
    listed = sorted(os.listdir(snap)) if os.path.isdir(snap) else []
    if listed != sorted(files):
        problems.append(f"snapshot holds {listed}")
    blobs = os.path.join(base, "blobs")
    leftovers = [b for b in os.listdir(blobs) if b.endswith(".incomplete")] \
        if os.path.isdir(blobs) else []
    if leftovers:
        problems.append(f"left over: {leftovers}")
    report(name, not problems, "; ".join(problems))
    return snap


try:
    # 1. A pull with a token, a redirect to another host, and a connection
    #    cut mid-file that is resumed within the run.
    home = os.path.join(TMP, "hf")
    cache = os.path.join(home, "hub")
    rid = "test-org/stories260K"
    REPOS[rid].cut_after["model.safetensors"] = [300000, 1]
    r = dyn("model", "pull", rid, home=home, extra_env={"HF_TOKEN": "some-token"})
    snap = os.path.join(cache, "models--test-org--stories260K", "snapshots", REPOS[rid].commit)
    report("pull exits 0 and prints the snapshot folder",
           r.returncode == 0 and r.stdout.strip() == snap, f"rc={r.returncode} {r.stderr[-500:]}")
    check_layout("cache layout: blobs by ETag, relative snapshot symlinks, refs/main", cache, rid)
    ranges = [x[2] for x in requests_for("/cdn/") if x[0] == "GET"]
    report("cut connection resumed with Range: bytes=300000-",
           "bytes=300000-" in ranges and "interrupted" in r.stderr, f"ranges {ranges}")
    cdn_auth = [x[3] for x in requests_for("/cdn/")]
    api_auth = [x[3] for x in requests_for("/api/models/test-org/stories260K")]
    report("token sent to the hub, not to the CDN host",
           cdn_auth and not any(cdn_auth) and api_auth == ["Bearer some-token"],
           f"cdn {cdn_auth} api {api_auth}")
    report("other weight formats and unlisted files skipped",
           not [x for x in LOG if "pytorch_model" in x[1] or "tok512" in x[1] or
                "original" in x[1]], "fetched unwanted files")
    report("progress lines on a non-terminal stderr",
           "downloaded test-org/stories260K/model.safetensors" in r.stderr, r.stderr[-300:])

    # huggingface_hub (an independent implementation) reads dyn's cache.
    try:
        import huggingface_hub as hf
    except ImportError:
        hf = None
    if hf is None:
        skip("huggingface_hub reads the cache", "huggingface_hub not installed")
    else:
        p = hf.try_to_load_from_cache(rid, "model.safetensors", cache_dir=cache)
        info = hf.scan_cache_dir(cache)
        repos = {x.repo_id: x for x in info.repos}
        revs = {rv.commit_hash: rv for rv in repos[rid].revisions} if rid in repos else {}
        rev = revs.get(REPOS[rid].commit)
        report("huggingface_hub reads the cache dyn wrote",
               isinstance(p, str) and open(p, "rb").read() == FILES["model.safetensors"] and
               rev is not None and set(rev.refs) == {"main"} and
               {f.file_name for f in rev.files} == set(WANTED) and not info.warnings,
               f"path {p}, revisions {list(revs)}, warnings {info.warnings}")

    # 2. info on the hub id: served from the cache, nothing fetched again.
    before = len([x for x in LOG if x[0] == "GET" and "/api/" not in x[1]])
    r = dyn("model", "info", "--json", rid, home=home)
    after = len([x for x in LOG if x[0] == "GET" and "/api/" not in x[1]])
    ok = r.returncode == 0 and json.loads(r.stdout)["parameters"] == 260032
    report("info ORG/NAME loads the cached snapshot without refetching",
           ok and before == after and json.loads(r.stdout)["commit"] == REPOS[rid].commit,
           f"rc={r.returncode} gets {before}->{after} {r.stderr[-300:]}")

    # 3. Offline, and an unreachable hub.
    dead = f"http://127.0.0.1:{closed_port()}"
    r = dyn("model", "info", rid, home=home, endpoint=dead, extra_env={"HF_HUB_OFFLINE": "1"})
    report("HF_HUB_OFFLINE=1 serves a cached model", r.returncode == 0 and
           "LlamaForCausalLM" in r.stdout, r.stderr[-300:])
    r = dyn("model", "info", "test-org/not-cached", home=home, endpoint=dead,
            extra_env={"HF_HUB_OFFLINE": "1"})
    report("HF_HUB_OFFLINE=1, not cached: clear error",
           r.returncode == 1 and one_line(r.stderr) and "test-org/not-cached" in r.stderr and
           "not in the hub cache" in r.stderr and "HF_HUB_OFFLINE" in r.stderr, r.stderr)
    r = dyn("model", "info", rid, home=home, endpoint=dead)
    report("unreachable hub: falls back to the cache with a warning",
           r.returncode == 0 and "cannot reach" in r.stderr and "cached" in r.stderr,
           f"rc={r.returncode} {r.stderr[-300:]}")
    r = dyn("model", "pull", "test-org/other", home=os.path.join(TMP, "hf-empty"), endpoint=dead)
    report("unreachable hub, not cached: clear error",
           r.returncode == 1 and "cannot reach" in r.stderr and "not in the cache" in r.stderr,
           r.stderr)
    # A hub that accepts connections and never answers: what is awaited is
    # said while waiting (each 6 s attempt: a notice after 3 s), each retry
    # too, and then the error.
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)
    try:
        r = dyn("model", "pull", "test-org/other", home=os.path.join(TMP, "hf-empty"),
                endpoint=f"http://127.0.0.1:{silent.getsockname()[1]}",
                extra_env={"HF_HUB_ETAG_TIMEOUT": "2"})
    finally:
        silent.close()
    report("a silent hub: the wait is explained while it lasts, then a clear error",
           r.returncode == 1 and r.stderr.count("no answer yet from http://127.0.0.1:") >= 3 and
           "attempt 2 of 3" in r.stderr and "attempt 3 of 3" in r.stderr and
           "cannot reach" in r.stderr, r.stderr[-800:])

    # 3b. The hub id names the model everywhere, as the folder does: each
    #     command run on the cached id (offline) matches it run on SRC.
    off = {"HF_HUB_OFFLINE": "1"}
    same = [("run", "--raw", "--prompt", "Once upon a time", "--max-tokens", "12",
             "--temperature", "0", "--threads", "1"),
            ("tokenize", "--text", "Once upon a time, a dog."),
            ("detokenize", "1", "403", "407", "261")]
    for args in same:
        by_id = dyn(args[0], rid, *args[1:], home=home, endpoint=dead, extra_env=off)
        by_dir = dyn(args[0], SRC, *args[1:], home=home, endpoint=dead, extra_env=off)
        report(f"dyn {args[0]} ORG/NAME = dyn {args[0]} FOLDER",
               by_id.returncode == 0 and by_id.stdout == by_dir.stdout and by_id.stdout.strip(),
               f"rc={by_id.returncode} {by_id.stdout[:80]!r} vs {by_dir.stdout[:80]!r} "
               f"{by_id.stderr[-300:]}")
    msgs = os.path.join(TMP, "msgs.json")
    with open(msgs, "w") as f:
        json.dump([{"role": "user", "content": "Hi there"}], f)
    by_id = dyn("template", rid, "--messages", msgs, home=home, endpoint=dead, extra_env=off)
    report("dyn template ORG/NAME renders the model's template",
           by_id.returncode == 0 and by_id.stdout == "<s>Hi there", f"{by_id.stdout!r} {by_id.stderr}")
    r = dyn("tokenize", "test-org/not-cached", "--text", "x", home=home, endpoint=dead,
            extra_env=off)
    report("dyn tokenize on an uncached id offline: clear error",
           r.returncode == 1 and one_line(r.stderr) and "not in the hub cache" in r.stderr,
           r.stderr)
    # dyn bench --tokenizer: the tokenizer loads (its word list checked), then
    # the dead server is the error.
    r = dyn("bench", "--url", dead, "--model", "m", "--tokenizer", rid, "--num-requests", "1",
            home=home, endpoint=dead, extra_env=off)
    report("dyn bench --tokenizer ORG/NAME loads the cached tokenizer",
           r.returncode != 0 and "not in the hub cache" not in r.stderr and
           "No such file" not in r.stderr and "test-org" not in r.stderr, r.stderr[-400:])
    # dyn serve --model ORG/NAME registers a card named after the id.
    store = "file://" + os.path.join(TMP, "store")
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update({"HF_HOME": home, "HF_ENDPOINT": dead, "HF_HUB_OFFLINE": "1", "DYN_STORE": store})
    cards, _ = serve_until_listed(["--model", rid, "--engine", "echo"], env, rid, 20)
    report("dyn serve --model ORG/NAME registers the model under that name", rid in cards,
           cards[-400:])

    # 3c. Bad names and tokens: usage errors (2) before any request; a token
    #     that would break its request header is refused (1).
    gets = len(LOG)
    r = dyn("model", "pull", "--revision", "../../x", rid, home=home)
    report("--revision ../../x: usage error naming the option",
           r.returncode == 2 and one_line(r.stderr) and "--revision" in r.stderr and
           len(LOG) == gets, f"rc={r.returncode} {r.stderr}")
    r = dyn("model", "pull", rid, home=os.path.join(TMP, "hf-tok"),
            extra_env={"HF_TOKEN": "abc\r\nX-Injected: 1"})
    report("HF_TOKEN with a line break: refused, nothing sent",
           r.returncode == 1 and "HF_TOKEN" in r.stderr and one_line(r.stderr) and
           not any("X-Injected" in str(x) for x in LOG[gets:]), f"rc={r.returncode} {r.stderr}")

    # 3d. On a terminal the download draws a progress bar.
    import pty
    home_tty = os.path.join(TMP, "hf-tty")
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update({"HF_HOME": home_tty, "HF_ENDPOINT": f"http://127.0.0.1:{PORT}"})
    master, slave = pty.openpty()
    proc = subprocess.Popen([DYN, "model", "pull", rid], env=env, stdin=slave,
                            stdout=subprocess.DEVNULL, stderr=slave)
    os.close(slave)
    screen = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:
            break
        if not chunk:
            break
        screen += chunk
    proc.wait(timeout=60)
    os.close(master)
    text_tty = screen.decode(errors="replace")
    report("a terminal gets a progress bar: [i/n] name, percent, bar, sizes, rate",
           proc.returncode == 0 and "\r[" in text_tty and "/5] model.safetensors" in text_tty and
           "100% |##############################|" in text_tty and "/s" in text_tty,
           repr(text_tty[-300:]))

    # 4. Gated repo: 401 names HF_TOKEN; the token opens it.
    home2 = os.path.join(TMP, "hf2")
    r = dyn("model", "pull", "test-org/gated", home=home2)
    report("gated repo without a token: error names HF_TOKEN",
           r.returncode == 1 and one_line(r.stderr) and "HF_TOKEN" in r.stderr and
           "401" in r.stderr and "test-org/gated" in r.stderr, r.stderr)
    r = dyn("model", "pull", "test-org/gated", home=home2, extra_env={"HF_TOKEN": "wrong"})
    report("gated repo with a wrong token: error says the token lacks access",
           r.returncode == 1 and "HF_TOKEN" in r.stderr and "does not grant" in r.stderr,
           r.stderr)
    r = dyn("model", "pull", "test-org/gated", home=home2, extra_env={"HF_TOKEN": TOKEN})
    report("gated repo with the token", r.returncode == 0, r.stderr[-300:])
    # The token may also come from HF_HOME/token, as huggingface-cli login leaves it.
    home3 = os.path.join(TMP, "hf3")
    os.makedirs(home3)
    with open(os.path.join(home3, "token"), "w") as fh:
        fh.write(TOKEN + "\n")
    r = dyn("model", "pull", "test-org/gated", home=home3)
    report("token read from HF_HOME/token", r.returncode == 0, r.stderr[-300:])

    # 5. 404s name the repository or the file.
    r = dyn("model", "pull", "test-org/nonexistent", home=home2)
    report("unknown repo: 404 names it",
           r.returncode == 1 and one_line(r.stderr) and "test-org/nonexistent" in r.stderr and
           "not found" in r.stderr, r.stderr)
    r = dyn("model", "pull", "test-org/missing-file", home=home2)
    report("missing file: 404 names the file",
           r.returncode == 1 and "model.safetensors" in r.stderr and "not found" in r.stderr,
           r.stderr)
    r = dyn("model", "pull", "--revision", "v9", rid, home=home2)
    report("unknown revision: named", r.returncode == 1 and "revision 'v9'" in r.stderr, r.stderr)
    r = dyn("model", "pull", "not-a-hub-id", home=home2)
    report("pull of a non-id: usage error", r.returncode == 2 and "ORG/NAME" in r.stderr, r.stderr)
    r = dyn("model", "info", "no-such-dir/or-repo", home=home2)
    report("info of a missing path that looks like an id: says both were tried",
           r.returncode == 1 and "no-such-dir/or-repo" in r.stderr and "local path" in r.stderr,
           r.stderr)

    # 6. A download that fails for good is kept and resumed by the next run.
    rid = "test-org/flaky"
    REPOS[rid].cut_after["model.safetensors"] = [400000, 1]
    REPOS[rid].fail_next["model.safetensors"] = 100
    r = dyn("model", "pull", rid, home=home2, timeout=90)
    inc = os.path.join(home2, "hub", "models--test-org--flaky", "blobs",
                       etag_of("model.safetensors", FILES["model.safetensors"]) + ".incomplete")
    size = os.path.getsize(inc) if os.path.exists(inc) else -1
    report("failed download: clear error, partial file kept",
           r.returncode == 1 and "run again to resume" in r.stderr and size == 400000,
           f"rc={r.returncode} partial={size} {r.stderr[-400:]}")
    REPOS[rid].fail_next["model.safetensors"] = 0
    n = len(LOG)
    r = dyn("model", "pull", rid, home=home2)
    weights = "/cdn/" + etag_of("model.safetensors", FILES["model.safetensors"])
    ranges = [x[2] for x in LOG[n:] if weights in x[1] and x[0] == "GET"]
    report("next run resumes at the partial size", r.returncode == 0 and
           ranges == ["bytes=400000-"], f"rc={r.returncode} ranges={ranges} {r.stderr[-300:]}")
    check_layout("resumed file is complete and linked", os.path.join(home2, "hub"), rid)

    # 7. Size and checksum checks.
    r = dyn("model", "pull", "test-org/badsize", home=home2)
    report("announced size not matched: clear error",
           r.returncode == 1 and "size mismatch" in r.stderr and "model.safetensors" in r.stderr,
           r.stderr)
    r = dyn("model", "pull", "test-org/badsum", home=home2)
    blobs = os.path.join(home2, "hub", "models--test-org--badsum", "blobs")
    bad_blob = os.path.join(blobs, etag_of("config.json", FILES["config.json"]))
    report("content not matching its ETag: checksum error, nothing cached",
           r.returncode == 1 and "checksum mismatch" in r.stderr and "config.json" in r.stderr
           and not os.path.exists(bad_blob) and not os.path.exists(bad_blob + ".incomplete"),
           r.stderr)

    # 8. Revisions: a tag gets a ref; a commit needs none.
    home4 = os.path.join(TMP, "hf4")
    rid = "test-org/tagged"
    r = dyn("model", "pull", "--revision", "v1.0", rid, home=home4)
    base = os.path.join(home4, "hub", "models--test-org--tagged")
    ok = r.returncode == 0 and open(os.path.join(base, "refs", "v1.0")).read() == \
        REPOS[rid].commit
    report("--revision TAG writes refs/TAG", ok, r.stderr[-300:])
    r = dyn("model", "pull", "--revision", REPOS[rid].commit, rid, home=home4)
    report("--revision COMMIT", r.returncode == 0 and
           sorted(os.listdir(os.path.join(base, "refs"))) == ["v1.0"], r.stderr[-300:])

    # 9. The dummy load format fetches no weights.
    home5 = os.path.join(TMP, "hf5")
    r = dyn("model", "info", "--load-format", "dummy", "--json", "test-org/stories260K",
            home=home5)
    snap5 = os.path.join(home5, "hub", "models--test-org--stories260K", "snapshots",
                         REPOS["test-org/stories260K"].commit)
    report("--load-format dummy on a hub id fetches config and tokenizer only",
           r.returncode == 0 and json.loads(r.stdout)["parameters"] == 260032 and
           sorted(os.listdir(snap5)) == sorted(set(WANTED) - {"model.safetensors"}),
           f"rc={r.returncode} {r.stderr[-300:]}")

    # 10. File names are escaped in URLs.
    r = dyn("model", "pull", "test-org/odd-names", home=home5)
    snap = r.stdout.strip()
    report("file names with spaces and %: escaped in the URL, stored as named",
           r.returncode == 0 and sorted(os.listdir(snap)) == ["config.json",
                                                              "model v1+%.safetensors"] and
           open(os.path.join(snap, "model v1+%.safetensors"), "rb").read() ==
           FILES["model.safetensors"], f"rc={r.returncode} {r.stderr[-300:]}")
    r = dyn("model", "info", "--json", snap, home=home5)
    report("a lone *.safetensors file is the checkpoint",
           r.returncode == 0 and json.loads(r.stdout)["parameters"] == 260032, r.stderr)

    # 12. A server that ignores Range (some mirrors and proxies) on a line
    #     that drops at the same byte every time: each attempt starts over
    #     and ends where the last one did.  That is no progress: the pull
    #     gives up with a clear error instead of looping for ever.
    rid = "test-org/no-range"
    REPOS[rid].cut_after["model.safetensors"] = [300000, 10 ** 9]
    n = len(LOG)
    t0 = time.monotonic()
    r = dyn("model", "pull", rid, home=os.path.join(TMP, "hf-norange"), timeout=60)
    took = time.monotonic() - t0
    gets = [x[2] for x in LOG[n:] if "/cdn/" in x[1] and x[0] == "GET"]
    size = len(FILES["model.safetensors"])
    last = (r.stderr.strip().splitlines() or [""])[-1]
    report("server ignoring Range, cut at the same byte: gives up with a clear error",
           r.returncode == 1 and "dyn model pull:" in last and
           f"download of {rid}/model.safetensors failed at byte 300000 of {size}" in last
           and "ignored the Range" in last and took < 40 and 2 <= len(gets) <= 10,
           f"rc={r.returncode} {took:.1f}s {len(gets)} GETs {r.stderr.strip()[-400:]}")
    REPOS[rid].cut_after.clear()
    r = dyn("model", "pull", rid, home=os.path.join(TMP, "hf-norange"))
    report("server ignoring Range, line healed: the pull completes",
           r.returncode == 0, f"rc={r.returncode} {r.stderr[-300:]}")
    # The same with a server that resumes at the wrong byte: each refused
    # resume starts over from 0 and reaches the same byte again.
    rid = "test-org/wrong-range"
    REPOS[rid].cut_after["model.safetensors"] = [300000, 10 ** 9]
    t0 = time.monotonic()
    r = dyn("model", "pull", rid, home=os.path.join(TMP, "hf-wrongrange"), timeout=60)
    took = time.monotonic() - t0
    report("server resuming at the wrong byte, cut at the same byte: gives up",
           r.returncode == 1 and "model.safetensors" in r.stderr and
           "did not resume" in r.stderr and took < 40,
           f"rc={r.returncode} {took:.1f}s {r.stderr.strip()[-300:]}")

    # 13. An index says which shards the checkpoint uses: a consolidated
    #     copy next to them (as Mistral ships) is not downloaded.
    rid = "test-org/sharded"
    home6 = os.path.join(TMP, "hf6")
    n = len(LOG)
    r = dyn("model", "pull", rid, home=home6)
    snap = r.stdout.strip()
    fetched = sorted({x[1].split("/")[-1] for x in LOG[n:] if "/resolve/" in x[1]})
    report("index present: only its shards are fetched, not consolidated.safetensors",
           r.returncode == 0 and not [x for x in LOG[n:] if "consolidated" in x[1]] and
           sorted(os.listdir(snap)) == sorted(set(WANTED) - {"model.safetensors"} |
                                              {"model.safetensors.index.json", *SHARDS}),
           f"rc={r.returncode} fetched {fetched} {r.stderr[-300:]}")
    r = dyn("model", "info", "--json", rid, home=home6)
    d = json.loads(r.stdout) if r.returncode == 0 else {}
    report("info on the sharded id loads its two shards",
           d.get("parameters") == 260032 and d.get("files") == 2,
           f"rc={r.returncode} {d} {r.stderr[-300:]}")
    n = len(LOG)
    r = dyn("model", "pull", "test-org/evil-index", home=home6)
    report("index naming ../../x.safetensors: refused, nothing of it fetched",
           r.returncode == 1 and "bad file name" in r.stderr and "model.norm.weight" in r.stderr
           and not [x for x in LOG[n:] if "x.safetensors" in x[1] or "consolidated" in x[1]],
           f"rc={r.returncode} {r.stderr[-300:]}")

    # 14. --revision names a tag or commit of a hub id in every command that
    #     takes a MODEL: dyn serve fetches that revision (and only it) and
    #     registers the model; later commands find it offline by the tag.
    rid = "test-org/tagged"
    home7 = os.path.join(TMP, "hf7")
    store = "file://" + os.path.join(TMP, "store7")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "DYN_"))}
    env.update({"HF_HOME": home7, "HF_ENDPOINT": f"http://127.0.0.1:{PORT}",
                "DYN_STORE": store})
    cards, err = serve_until_listed(["--model", rid, "--revision", "v1.0", "--engine", "echo"],
                                    env, rid, 30)
    refs = os.path.join(home7, "hub", "models--test-org--tagged", "refs")
    refs = sorted(os.listdir(refs)) if os.path.isdir(refs) else []
    report("dyn serve --model ORG/NAME --revision TAG fetches the tag and registers the model",
           rid in cards and refs == ["v1.0"], f"refs {refs} cards {cards[-300:]!r} {err[-300:]}")
    off = {"HF_HUB_OFFLINE": "1"}
    text = "Once upon a time, a dog."
    by_tag = dyn("tokenize", rid, "--revision", "v1.0", "--text", text, home=home7,
                 endpoint=dead, extra_env=off)
    by_dir = dyn("tokenize", SRC, "--text", text, home=home7, endpoint=dead, extra_env=off)
    no_tag = dyn("tokenize", rid, "--text", text, home=home7, endpoint=dead, extra_env=off)
    report("dyn tokenize ORG/NAME --revision TAG works offline from the cache",
           by_tag.returncode == 0 and by_tag.stdout == by_dir.stdout and by_tag.stdout.strip()
           and no_tag.returncode == 1 and "revision main" in no_tag.stderr,
           f"rc={by_tag.returncode} {by_tag.stdout!r} vs {by_dir.stdout!r} {by_tag.stderr} "
           f"/ without: rc={no_tag.returncode} {no_tag.stderr}")
    by_tag = dyn("template", rid, "--revision", "v1.0", "--messages", msgs, home=home7,
                  endpoint=dead, extra_env=off)
    report("dyn template ORG/NAME --revision TAG renders offline",
           by_tag.returncode == 0 and by_tag.stdout == "<s>Hi there",
           f"{by_tag.stdout!r} {by_tag.stderr}")
    # Usage errors, before any request: a bad revision, or one given with a
    # local path (it has no revisions).
    n = len(LOG)
    bad = [("run", rid, "--revision", "../x", "--prompt", "x"),
           ("serve", "--model", rid, "--revision", "a..b", "--engine", "echo"),
           ("tokenize", rid, "--revision", "../x", "--text", "x"),
           ("detokenize", rid, "--revision", "a..b", "1"),
           ("template", rid, "--revision", "../x", "--messages", msgs),
           ("bench", "--tokenizer", rid, "--revision", "../x", "--num-requests", "1"),
           ("model", "info", rid, "--revision", "../x")]
    for args in bad:
        r = dyn(*args, home=home7)
        report(f"dyn {args[0]} --revision BAD: usage error",
               r.returncode == 2 and one_line(r.stderr) and "--revision" in r.stderr,
               f"rc={r.returncode} {r.stderr}")
    for args in [("run", SRC, "--revision", "v1.0", "--prompt", "x"),
                 ("serve", "--model", SRC, "--revision", "v1.0", "--engine", "echo"),
                 ("tokenize", SRC, "--revision", "v1.0", "--text", "x"),
                 ("bench", "--tokenizer", SRC, "--revision", "v1.0", "--num-requests", "1"),
                 ("model", "info", SRC, "--revision", "v1.0")]:
        r = dyn(*args, home=home7)
        report(f"dyn {args[0]} LOCAL-PATH --revision: usage error, applies to hub ids",
               r.returncode == 2 and one_line(r.stderr) and "applies to hub ids" in r.stderr,
               f"rc={r.returncode} {r.stderr}")
    report("usage errors sent no request", len(LOG) == n, f"{LOG[n:][:3]}")

    # 11. dyn reads a cache that huggingface_hub filled from the same server.
    if hf is None:
        skip("dyn reads huggingface_hub's cache", "huggingface_hub not installed")
    else:
        hf_cache = os.path.join(TMP, "hf-py", "hub")
        code = ("import sys, huggingface_hub as h; print(h.snapshot_download("
                "'test-org/stories260K', cache_dir=sys.argv[1], "
                "allow_patterns=['*.json', '*.safetensors']))")
        env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
        env.update({"HF_ENDPOINT": f"http://127.0.0.1:{PORT}", "HF_HUB_DISABLE_XET": "1",
                    "HF_HUB_DISABLE_TELEMETRY": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1"})
        try:
            p = subprocess.run([sys.executable, "-c", code, hf_cache], env=env,
                               capture_output=True, text=True, timeout=60)
        except subprocess.TimeoutExpired:
            p = subprocess.CompletedProcess([], 124, "", "timed out")
        if p.returncode != 0:
            skip("dyn reads huggingface_hub's cache",
                 "huggingface_hub could not download from the fake hub: " +
                 (p.stderr.strip().splitlines() or ["?"])[-1])
        else:
            r = dyn("model", "info", "--json", "test-org/stories260K", home=TMP,
                    extra_env={"HF_HUB_CACHE": hf_cache, "HF_HUB_OFFLINE": "1"})
            report("dyn reads a cache huggingface_hub wrote (offline)",
                   r.returncode == 0 and json.loads(r.stdout)["parameters"] == 260032,
                   r.stderr[-300:])
finally:
    server.shutdown()
    server.server_close()
    shutil.rmtree(TMP, ignore_errors=True)

sys.exit(1 if FAILED else 0)
