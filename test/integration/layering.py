#!/usr/bin/env python3
"""layering.py - includes run downwards only (DESIGN.md section 4).

Reads every `#include "..."` of the library's sources (main.c, cmd/, core/,
net/, store/, gpu/; system <...> includes are ignored) and checks it against
the matrix below: a file may include files of its own folder and of the
folders its folder is allowed.  Each include that is not allowed is a FAIL
naming the file, the line and the rule it breaks.

Levels, top to bottom:
  main.c
  cmd/                      parses options and wires components: may include any of them
  core/frontend, core/router, core/serve, core/planner     the roles: never each other
  core/discovery            the registry the roles share
  core/engine -> core/kv    the engine; compute backends only through core/engine/backend.h
  core/embed                the sentence encoder (BERT): on the CPU kernels directly
  core/cpu, gpu/            the backends
  core/proto, net, store    contracts and transport
  core/grammar              constrained decoding (grammars, token masks): on core/tok
  core/tok, core/tmpl, core/model, core/bench, core/parse    libraries
  core/*.h                  core utilities

Run from the repository root; `layering.py ROOT` checks another tree.
"""
import os
import re
import shutil
import sys
import tempfile

UTIL = "core"  # the files at the top of core/: err, strbuf, util, log ...

ROLE_DEPS = {"core/proto", "core/discovery", "core/tok", "core/tmpl",
             "core/model", "core/parse", "core/grammar", "net", "store", UTIL}

# Folder -> the folders it may include (its own is always allowed).
ALLOWED = {
    "main.c": {"cmd", UTIL},
    "cmd": None,  # any component: cmd is where they are wired together
    "core/frontend": ROLE_DEPS,
    "core/router": ROLE_DEPS,
    # The worker runs the engine and exports its KV blocks.
    "core/serve": ROLE_DEPS | {"core/engine", "core/kv", "core/embed"},
    "core/planner": ROLE_DEPS,
    "core/discovery": {"core/proto", "core/tok", "core/tmpl", "net", "store", UTIL},
    # A grammar's token mask constrains the sampler.
    "core/engine": {"core/kv", "core/proto", "core/model", "core/grammar", UTIL},
    "core/kv": {"core/proto", "core/model", UTIL},  # the KV element dtype
    # The encoder has no backend interface yet: it runs on the CPU kernels.
    "core/embed": {"core/cpu", "core/tok", "core/model", UTIL},
    "core/cpu": {"core/model", UTIL},
    "gpu": {"core/model", UTIL},
    "core/proto": {UTIL},
    # The request plane registers endpoints in the store; both sit below
    # the roles, and the store never calls up into the transport.
    "net": {"store", UTIL},
    "store": {UTIL},
    "core/tok": {UTIL},
    "core/tmpl": {UTIL},
    "core/model": {UTIL},
    "core/bench": {"core/tok", "core/tmpl", "net", UTIL},
    "core/parse": {UTIL},
    "core/grammar": {"core/tok", UTIL},  # the vocabulary's token bytes
    UTIL: set(),
}

WHY = {
    "core/frontend": "the roles (frontend, router, serve) share only core/proto, "
                     "core/discovery, net and store, never each other",
    "core/router": "the roles (frontend, router, serve) share only core/proto, "
                   "core/discovery, net and store, never each other",
    "core/serve": "the roles (frontend, router, serve) share only core/proto, "
                  "core/discovery, net and store, never each other",
    "core/engine": "the engine sees compute backends only through core/engine/backend.h",
    "core/proto": "the contracts include only core utilities",
    UTIL: "core utilities are the bottom level",
}

# Single headers allowed across the matrix, (from folder, header).
ALLOWED_FILES = {
    # The backend interface is the one engine header a backend sees.
    ("core/cpu", "core/engine/backend.h"),
    ("gpu", "core/engine/backend.h"),
    ("core/kv", "core/engine/backend.h"),
    # UTF-8 decoding is a leaf (it includes nothing of dyn's); the route
    # protocol cuts text on character boundaries with it.
    ("core/proto", "core/tok/utf8.h"),
    # The tool-call parsers write the code points of Python's escapes.
    ("core/parse", "core/tok/utf8.h"),
    # The frontend embeds a KV router (DESIGN.md: "dyn frontend ... embeds a
    # router"): the routing library's API, the same one the router service
    # runs behind core/proto/route.h.  The router never includes the frontend.
    ("core/frontend", "core/router/kv_router.h"),
    # A decoder model as a sentence encoder uses the engine's RoPE
    # frequencies (one function, not a second copy).
    ("core/embed", "core/engine/forward.h"),
}

# The one engine file that names the backends to choose from.
REGISTRY = re.compile(r"^core/engine/backend\.c$")
BACKENDS = ("core/cpu", "gpu")

# Includes still in the tree that other work removes.  Each entry is
# (file, header, when to delete the entry).  An entry that no longer
# matches an include is a FAIL, so the list only shrinks.
ALLOW_PENDING = []

SOURCES = ("main.c", "cmd", "core", "net", "store", "gpu")
SOURCE_EXT = (".c", ".h", ".cu", ".cuh")
INCLUDE = re.compile(r'^\s*#\s*include\s*"([^"]+)"')


def level(path):
    """The folder (level) of a repository-relative path, or None."""
    parts = path.split("/")
    if path == "main.c":
        return "main.c"
    if parts[0] == "core":
        return UTIL if len(parts) == 2 else "core/" + parts[1]
    if parts[0] in ("cmd", "net", "store", "gpu") and len(parts) > 1:
        return parts[0]
    return None


def includes(text):
    """(line number, included path) for each quoted include outside comments."""
    out, in_comment = [], False
    for n, line in enumerate(text.splitlines(), 1):
        code, i = "", 0
        while i < len(line):  # drop comments; includes never hide in strings
            if in_comment:
                end = line.find("*/", i)
                if end < 0:
                    i = len(line)
                else:
                    in_comment, i = False, end + 2
            elif line.startswith("/*", i):
                in_comment, i = True, i + 2
            elif line.startswith("//", i):
                break
            else:
                code += line[i]
                i += 1
        m = INCLUDE.match(code)
        if m:
            out.append((n, m.group(1)))
    return out


def resolve(root, src, inc):
    """The repository-relative path of an include, as the compiler finds it:
    next to the including file first, then from the root (-I.)."""
    local = os.path.normpath(os.path.join(os.path.dirname(src), inc))
    if os.path.exists(os.path.join(root, local)):
        return local
    return os.path.normpath(inc)


def allowed(src, src_level, target):
    """None when src may include target, else the rule it breaks."""
    to = level(target)
    if to is None or to == src_level:
        return None
    if src_level == "cmd":
        return None if to != "main.c" else "nothing includes main.c"
    if (src_level, target) in ALLOWED_FILES:
        return None
    if REGISTRY.match(src) and to in BACKENDS:
        return None
    ok = ALLOWED.get(src_level)
    if ok is None:
        return "%s is not in the layering matrix (add it to ALLOWED)" % src_level
    if to in ok:
        return None
    rule = "%s may include only %s" % (
        src_level, ", ".join(sorted(ok | {src_level})) or "itself")
    if src_level == "core/engine" and to in BACKENDS:
        rule += " (%s; a backend is named only in core/engine/backend.c)" % WHY[src_level]
    elif src_level in WHY:
        rule += " (%s)" % WHY[src_level]
    return rule


def check_tree(root, pending=()):
    """Returns (violations, pending_used): violations are
    (file, line, header, rule) not covered by pending."""
    bad, used = [], set()
    for top in SOURCES:
        base = os.path.join(root, top)
        if os.path.isfile(base):
            files = [top]
        elif os.path.isdir(base):
            files = []
            for d, _, names in os.walk(base):
                for name in names:
                    if name.endswith(SOURCE_EXT):
                        files.append(os.path.relpath(os.path.join(d, name), root))
        else:
            continue
        for src in sorted(files):
            src_level = level(src)
            with open(os.path.join(root, src), encoding="utf-8", errors="replace") as f:
                text = f.read()
            for n, inc in includes(text):
                target = resolve(root, src, inc)
                rule = allowed(src, src_level, target)
                if rule is None:
                    continue
                key = next((p for p in pending if p[0] == src and p[1] == target), None)
                if key:
                    used.add(key)
                    continue
                bad.append((src, n, target, rule))
    return bad, used


# ---- self-test: a small fake tree ----------------------------------------

def write(root, path, text):
    full = os.path.join(root, path)
    os.makedirs(os.path.dirname(full) or root, exist_ok=True)
    with open(full, "w") as f:
        f.write(text)


def self_test():
    fails = []
    tmp = tempfile.mkdtemp(prefix="dyn-layering.")
    try:
        write(tmp, "main.c", '#include "cmd/cmd.h"\n#include "core/err.h"\n')
        write(tmp, "cmd/serve.c", '#include "core/serve/worker.h"\n#include "core/router/x.h"\n')
        write(tmp, "core/err.h", "")
        write(tmp, "core/proto/generate.c", '#include "core/strbuf.h"\n#include "core/tok/utf8.h"\n')
        write(tmp, "core/serve/worker.c",
              '#include "core/serve/worker.h"\n'
              '#include "core/proto/generate.h"\n'
              '#include <core/router/sys.h>\n'
              '/* #include "core/router/commented.h" */\n'
              '// #include "core/router/commented.h"\n'
              '#include "core/engine/engine.h"\n')
        write(tmp, "core/router/service.c",
              '#include "core/proto/route.h"\n'
              '#  include   "core/serve/worker.h"   /* upward */\n')
        write(tmp, "core/engine/engine.c", '#include "core/engine/backend.h"\n#include "core/cpu/kernels.h"\n')
        write(tmp, "core/engine/backend.c", '#include "core/cpu/backend_cpu.h"\n')
        write(tmp, "core/cpu/backend_cpu.c", '#include "core/engine/backend.h"\n')
        write(tmp, "core/cpu/kernels.h", "")
        write(tmp, "store/store.c", '#include "net/http_client.h"\n')
        write(tmp, "core/frontend/handler.c", '#include "local.h"\n')
        write(tmp, "core/frontend/local.h", "")
        bad, _ = check_tree(tmp)
        got = sorted((f, n, t) for f, n, t, _ in bad)
        want = [("core/engine/engine.c", 2, "core/cpu/kernels.h"),
                ("core/router/service.c", 2, "core/serve/worker.h"),
                ("store/store.c", 1, "net/http_client.h")]
        if got != want:
            fails.append("fake tree: violations %s, expected %s" % (got, want))
        rules = {f: r for f, _, _, r in bad}
        r = rules.get("core/router/service.c", "")
        if "never each other" not in r or "core/router may include only" not in r:
            fails.append("fake tree: the router's rule reads %r" % r)
        if "backend.c" not in rules.get("core/engine/engine.c", ""):
            fails.append("fake tree: the engine's rule does not name the registry file")

        # A pending entry hides its include and is reported as used.
        entry = ("core/router/service.c", "core/serve/worker.h", "test")
        bad, used = check_tree(tmp, [entry])
        if any(f == "core/router/service.c" for f, *_ in bad) or entry not in used:
            fails.append("fake tree: a pending entry did not cover its include")

        # A tree that keeps the rules passes.
        os.remove(os.path.join(tmp, "store/store.c"))
        write(tmp, "core/router/service.c", '#include "core/proto/route.h"\n')
        write(tmp, "core/engine/engine.c", '#include "core/engine/backend.h"\n')
        bad, _ = check_tree(tmp)
        if bad:
            fails.append("fake tree without upward includes: %s" % bad)
    finally:
        shutil.rmtree(tmp)
    return fails


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else "."
    failed = 0

    fails = self_test()
    for f in fails:
        print("FAIL: layering/self_test: %s" % f)
    if not fails:
        print("PASS: layering/self_test")
    failed += len(fails)

    bad, used = check_tree(root, ALLOW_PENDING)
    for src, n, target, rule in bad:
        print("FAIL: layering: %s:%d: includes %s: %s" % (src, n, target, rule))
    failed += len(bad)
    for entry in ALLOW_PENDING:
        if entry in used:
            print("SKIP: layering: %s includes %s: pending, %s" % entry)
        else:
            print("FAIL: layering: ALLOW_PENDING entry %s -> %s no longer matches "
                  "an include: delete it from test/integration/layering.py" % entry[:2])
            failed += 1
    if not bad:
        print("PASS: layering/includes_run_downwards")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
