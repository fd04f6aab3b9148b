#!/usr/bin/env python3
"""run_interactive.py - "dyn run" as a person uses it, driven through a
pseudo-terminal (Python's pty module): the prompt, streamed answers that
match the published greedy reference, history kept across turns and
cleared by /reset (seen in the prompt token counts of --verbose), Ctrl-C
stopping a long answer and returning to the prompt, Ctrl-D quitting, and
the weight-loading bar on the terminal.
"""
import json
import os
import pty
import re
import select
import shutil
import signal
import sys
import tempfile
import time

DYN = os.environ.get("DYN_BIN", os.path.abspath("dyn"))
TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODEL = os.path.join(TOP, "..", "shared", "models", "stories260K")
ANSI = re.compile(rb"\x1b\[[0-9;?]*[A-Za-z]|\r")

failed = 0


def check(name, ok, why=""):
    global failed
    if ok:
        print(f"PASS: {name}")
    else:
        failed += 1
        print(f"FAIL: {name}: {why}")
    sys.stdout.flush()


class Term:
    """A dyn run process on a pty; out accumulates everything it wrote."""

    def __init__(self, args):
        self.pid, self.fd = pty.fork()
        if self.pid == 0:
            os.environ["TERM"] = "xterm"
            os.execv(DYN, [DYN] + args)
        self.out = b""
        self.mark = 0

    def read_until(self, pattern, timeout=20.0):
        """Wait until pattern (bytes regex) appears after the mark in the
        output with escapes and carriage returns removed; True if it did."""
        end = time.time() + timeout
        while True:
            if re.search(pattern, ANSI.sub(b"", self.out[self.mark:])):
                return True
            left = end - time.time()
            if left <= 0:
                return False
            r, _, _ = select.select([self.fd], [], [], min(left, 0.2))
            if r:
                try:
                    data = os.read(self.fd, 65536)
                except OSError:
                    data = b""
                if not data:
                    return bool(re.search(pattern, ANSI.sub(b"", self.out[self.mark:])))
                self.out += data

    def since_mark(self):
        return ANSI.sub(b"", self.out[self.mark:]).decode("utf-8", "replace")

    def send(self, data):
        self.mark = len(self.out)
        os.write(self.fd, data)

    def wait_exit(self, timeout=10.0):
        end = time.time() + timeout
        while time.time() < end:
            self.read_until(rb"(?!)", 0.1)
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.read_until(rb"(?!)", 0.2)	# what is left in the pty
                return os.waitstatus_to_exitcode(status)
        os.kill(self.pid, signal.SIGKILL)
        os.waitpid(self.pid, 0)
        return None


def main():
    if not os.path.exists(os.path.join(MODEL, "model.safetensors")):
        print(f"SKIP: run interactive: {MODEL} not found")
        return 0
    ref = open(os.path.join(MODEL, "expected_greedy_from_bos.txt")).read()

    # Raw mode: a prompt that is the start of the greedy reference continues
    # exactly as the reference does.
    t = Term(["run", MODEL, "--raw", "--temperature", "0", "--max-tokens", "20"])
    check("interactive prompt appears", t.read_until(rb">>> "), repr(t.since_mark()[-200:]))
    t.send(b"Once upon a time,\r")
    ok = t.read_until(rb"Lily\..*\n.*>>> ")
    text = t.since_mark()
    want = ref[len("Once upon a time,"):][:40]
    check("streamed answer matches the greedy reference", ok and want in text,
          f"want {want!r} in {text[-300:]!r}")
    t.send(b"\x04")
    rc = t.wait_exit()
    check("Ctrl-D on an empty line quits with status 0", rc == 0, f"exit {rc}")

    # Chat mode with --verbose: history grows the next turn's prompt;
    # /reset brings it back to the first turn's size.
    t = Term(["run", MODEL, "--temperature", "0", "--max-tokens", "8", "--verbose"])
    t.read_until(rb">>> ")
    counts = []
    for line in (b"Tom had a dog.\r", b"Tom had a dog.\r", b"/reset\r", b"Tom had a dog.\r"):
        t.send(line)
        if line.startswith(b"/reset"):
            check("/reset says the conversation is cleared",
                  t.read_until(rb"conversation cleared(.|\n)*>>> "), repr(t.since_mark()[-200:]))
            continue
        t.read_until(rb"prompt: \d+ tokens.*\n(.|\n)*>>> ")
        m = re.search(r"prompt: (\d+) tokens", t.since_mark())
        counts.append(int(m.group(1)) if m else -1)
    check("history kept across turns, cleared by /reset",
          len(counts) == 3 and counts[0] > 0 and counts[1] > counts[0] and counts[2] == counts[0],
          f"prompt token counts {counts}")
    t.send(b"/exit\r")
    check("/exit quits with status 0", t.wait_exit() == 0)

    # Typed ahead while an answer streams, pasted with newlines, continued
    # with a backslash: nothing is lost, and each entry is one prompt.
    def prompt_tokens(text):
        t = Term(["run", MODEL, "--raw", "--max-tokens", "1", "--verbose", "--prompt", text])
        t.wait_exit(30)
        m = re.search(r"prompt: (\d+) tokens", ANSI.sub(b"", t.out).decode("utf-8", "replace"))
        return int(m.group(1)) if m else -1

    t = Term(["run", MODEL, "--raw", "--temperature", "0", "--max-tokens", "40", "--ignore-eos",
              "--verbose"])
    t.read_until(rb">>> ")
    t.send(b"Once upon a time,\rThe cat\r")
    ok = t.read_until(rb"prompt: \d+ tokens(.|\n)*prompt: \d+ tokens(.|\n)*>>> ", 30)
    check("a line typed ahead while an answer streams is kept and answered next", ok,
          repr(t.since_mark()[-300:]))
    want = prompt_tokens("line one\nline two")
    t.send(b"\x1b[200~line one\nline two\x1b[201~\r")
    ok = t.read_until(rb"prompt: \d+ tokens(.|\n)*>>> ", 30)
    got = re.findall(r"prompt: (\d+) tokens", t.since_mark())
    check("a paste keeps its newlines: one prompt of both lines",
          ok and got == [str(want)] and "... " in t.since_mark(), f"want [{want}], got {got}")
    want = prompt_tokens("Tom had\n a dog.")
    t.send(b"Tom had\\\r a dog.\r")
    ok = t.read_until(rb"prompt: \d+ tokens(.|\n)*>>> ", 30)
    got = re.findall(r"prompt: (\d+) tokens", t.since_mark())
    check("a line ending in a backslash continues on the next",
          ok and got == [str(want)], f"want [{want}], got {got}")
    t.send(b"/help\r")
    check("/help lists the commands",
          t.read_until(rb"/reset(.|\n)*/exit(.|\n)*>>> ", 10), repr(t.since_mark()[-300:]))
    t.send(b"/frobnicate\r")
    ok = t.read_until(rb"unknown command /frobnicate(.|\n)*>>> ", 10)
    check("an unknown /word is reported, not sent to the model",
          ok and "prompt:" not in t.since_mark(), repr(t.since_mark()[-300:]))
    t.send(b"\x04")
    t.wait_exit()

    # The context: a cut answer is marked, a conversation that no longer
    # fits names /reset, and a context smaller than the model's is said.
    t = Term(["run", MODEL, "--temperature", "0", "--max-tokens", "0", "--ignore-eos",
              "--max-model-len", "96"])
    check("a context smaller than the model's is said at start",
          t.read_until(rb"context: 96 tokens of the model's \d+(.|\n)*>>> "),
          repr(t.since_mark()[-300:]))
    t.send(b"Tom had a dog.\r")
    check("an answer cut by the end of the context is marked",
          t.read_until(rb"\[cut: the context \(96 tokens\) is full(.|\n)*>>> ", 30),
          repr(t.since_mark()[-300:]))
    t.send(b"Tom had a dog.\r")
    check("a conversation that no longer fits points to /reset",
          t.read_until(rb"context holds 96; /reset clears it(.|\n)*>>> ", 30),
          repr(t.since_mark()[-300:]))
    t.send(b"\x04")
    t.wait_exit()

    # Ctrl-C stops a long answer: a wider, deeper stories260K (random
    # weights) generating until its 4096-token context ends, slowly.
    tmp = tempfile.mkdtemp()
    try:
        for f in os.listdir(MODEL):
            if f != "model.safetensors":
                shutil.copy(os.path.join(MODEL, f), tmp)
        cfg = json.load(open(os.path.join(MODEL, "config.json")))
        cfg.update(hidden_size=768, intermediate_size=3072, num_hidden_layers=16,
                   num_attention_heads=12, num_key_value_heads=12, max_position_embeddings=4096)
        cfg.pop("head_dim", None)
        json.dump(cfg, open(os.path.join(tmp, "config.json"), "w"))
        t = Term(["run", tmp, "--raw", "--load-format", "dummy", "--ignore-eos",
                  "--max-tokens", "0", "--temperature", "1", "--seed", "1", "--threads", "1"])
        t.read_until(rb">>> ", 60)
        t.send(b"Once\r")
        streaming = t.read_until(rb"Once\s*\n(.|\n)*\S{3}", 30)
        t.send(b"\x03")
        t0 = time.time()
        stopped = t.read_until(rb"\[stopped\](.|\n)*>>> ", 15)
        check("Ctrl-C stops the answer and returns to the prompt",
              streaming and stopped and time.time() - t0 < 15, repr(t.since_mark()[-200:]))
        check("Ctrl-C is not echoed into the answer", "^C" not in t.since_mark(),
              repr(t.since_mark()[-200:]))
        t.send(b"\x04")
        check("Ctrl-D after a stopped answer quits", t.wait_exit() == 0)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    # The loading bar: weights read from disk show "loading weights" on
    # the terminal (the bar is erased when done); not when stderr is a file.
    t = Term(["run", MODEL, "--raw", "--max-tokens", "1", "--prompt", "Once"])
    rc = t.wait_exit(30)
    check("a terminal shows the weight-loading bar",
          rc == 0 and b"loading weights" in t.out, repr(t.out[:300]))
    t = Term(["run", MODEL, "--raw", "--max-tokens", "1", "--prompt", "Once",
              "--load-format", "dummy"])
    rc = t.wait_exit(30)
    check("a terminal shows the bar while dummy weights are made",
          rc == 0 and b"loading weights" in t.out, repr(t.out[:300]))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
