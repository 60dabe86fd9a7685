#!/usr/bin/env python3
"""The live view (`ssh -t gw top`) at work, beside OpenSSH's keystroke echo on the same machine.

    bench/live-view.py                      # as root; needs sshd, tmux, cargo, ssh
    AGENTS=50 KEYS=200 IDLE_SECONDS=30 bench/live-view.py   # the defaults

What it does:
  1. The release build; a private sshd and agentgate on 127.0.0.1, as bench/concurrency.py
     starts them; AGENTS local agents: one in ten printing a line a second, the rest asleep.
  2. `ssh -tt gw top` in a pseudo-terminal of 80x24 (the client's real terminal size reaches
     the view), until the view has drawn every agent.
  3. Keys: KEYS presses of Down and Up, one at a time; for each, the time from writing the key
     to the client's tty until the first byte of the redraw comes back. Beside it, the same
     for a keystroke echoed by `cat` through `ssh -tt root@sshd cat` (OpenSSH's own round trip
     of one key, the least any remote screen can take).
  4. Quiet: IDLE_SECONDS with the view open and nobody typing: the bytes it sends (redraws of
     what changed: statuses, ages, last lines) and the gateway's CPU time, then the same time
     with the view closed; the difference is what one open view costs.
  5. bench/results/live-view.json and the section between <!-- live-view:start --> and
     <!-- live-view:end --> in docs/PERFORMANCE.md.
"""

import datetime
import importlib.util
import json
import os
import pty
import re
import select
import statistics
import struct
import subprocess
import sys
import termios
import fcntl
import time

AGENTS = int(os.environ.get("AGENTS", "50"))
KEYS = int(os.environ.get("KEYS", "200"))
IDLE_SECONDS = float(os.environ.get("IDLE_SECONDS", "30"))
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS_JSON = os.path.join(REPO, "bench/results/live-view.json")

spec = importlib.util.spec_from_file_location("concurrency", os.path.join(REPO, "bench/concurrency.py"))
conc = importlib.util.module_from_spec(spec)
spec.loader.exec_module(conc)


def log(msg):
    print(f"live-view: {msg}", file=sys.stderr, flush=True)


def die(msg):
    log(f"error: {msg}")
    sys.exit(1)


class Terminal:
    """A client in a pseudo-terminal of 80x24, read without blocking."""

    def __init__(self, argv):
        self.master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
        self.proc = subprocess.Popen(
            argv, stdin=slave, stdout=slave, stderr=slave, start_new_session=True,
            env=dict(os.environ, TERM="xterm-256color"),
        )
        os.close(slave)
        self.seen = b""

    def read(self, timeout):
        ready, _, _ = select.select([self.master], [], [], timeout)
        if not ready:
            return b""
        try:
            chunk = os.read(self.master, 65536)
        except OSError:
            return b""
        self.seen = (self.seen + chunk)[-200000:]
        return chunk

    def wait_for(self, pattern, seconds=30):
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.read(0.2)
            if re.search(pattern, self.seen):
                return
        die(f"no {pattern!r} on the terminal within {seconds} s; it shows: {self.seen[-600:]!r}")

    def drain(self, quiet):
        """Reads until nothing has come for `quiet` seconds; returns the bytes."""
        got = b""
        while chunk := self.read(quiet):
            got += chunk
        return got

    def key_latencies(self, keys):
        times = []
        for key in keys:
            self.drain(0.03)
            started = time.perf_counter()
            os.write(self.master, key)
            if not self.read(5):
                die(f"no answer to {key!r} within 5 s")
            times.append((time.perf_counter() - started) * 1000)
        return times

    def close(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        os.close(self.master)


def summary(ms):
    ms = sorted(ms)
    return {
        "n": len(ms),
        "median_ms": round(statistics.median(ms), 3),
        "p90_ms": round(ms[int(0.9 * (len(ms) - 1))], 3),
        "p99_ms": round(ms[int(0.99 * (len(ms) - 1))], 3),
    }


def main():
    if os.geteuid() != 0:
        die("run as root (the baseline sshd runs as root)")
    started = time.monotonic()
    subprocess.run(["cargo", "build", "--release", "--workspace", "--locked", "--quiet"], cwd=REPO, check=True)
    bench = conc.Bench()
    try:
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", bench.key], check=True)
        bench.start_sshd()
        bench.start_gateway()
        gw = ["ssh", *bench.ssh_opts(bench.gw_port)]
        for i in range(1, AGENTS):
            command = (["sh", "-c", "'while :; do date; sleep 1; done'"] if i % 10 == 0
                       else ["sleep", "100000"])
            out = subprocess.run([*gw, "127.0.0.1", "create", f"a{i:03}", "--", *command],
                                 capture_output=True, text=True, stdin=subprocess.DEVNULL)
            if out.returncode != 0:
                die(f"create a{i:03}: {out.stderr}")
        log(f"{AGENTS} agents")

        view = Terminal([*gw, "-tt", "127.0.0.1", "top"])
        # The first frame may come before the first look at the hosts, and later frames send
        # only the cells that changed: wait for a count, then for a look or two more.
        view.wait_for(rb"\d+ agents")
        time.sleep(4)
        view.drain(0.5)
        view_keys = view.key_latencies([b"\x1b[B", b"\x1b[A"] * (KEYS // 2))
        log(f"view: {summary(view_keys)}")

        cpu0 = conc.cpu_seconds(bench.gw.pid)
        t0 = time.monotonic()
        quiet_bytes = 0
        while time.monotonic() - t0 < IDLE_SECONDS:
            quiet_bytes += len(view.read(0.5))
        cpu_with = conc.cpu_seconds(bench.gw.pid) - cpu0
        view.close()
        time.sleep(1)
        cpu0 = conc.cpu_seconds(bench.gw.pid)
        time.sleep(IDLE_SECONDS)
        cpu_without = conc.cpu_seconds(bench.gw.pid) - cpu0
        log(f"quiet: {quiet_bytes} bytes, cpu {cpu_with:.2f} s with, {cpu_without:.2f} s without")

        echo = Terminal(["ssh", *bench.ssh_opts(bench.sshd_port), "-tt", "root@127.0.0.1", "cat"])
        time.sleep(1)
        echo.drain(0.5)
        echo_keys = echo.key_latencies([b"x"] * KEYS)
        echo.close()
        log(f"OpenSSH echo: {summary(echo_keys)}")

        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO,
                                capture_output=True, text=True).stdout.strip()
        results = {
            "date": datetime.date.today().isoformat(),
            "agentgate_commit": commit,
            "openssh_version": subprocess.run(["ssh", "-V"], capture_output=True, text=True).stderr.strip(),
            "agents": AGENTS,
            "printing_agents": (AGENTS - 1) // 10,
            "terminal": "80x24",
            "view_key_to_redraw": summary(view_keys),
            "openssh_key_echo": summary(echo_keys),
            "quiet_seconds": IDLE_SECONDS,
            "quiet_bytes_per_second": round(quiet_bytes / IDLE_SECONDS, 1),
            "gateway_cpu_percent_with_view": round(100 * cpu_with / IDLE_SECONDS, 2),
            "gateway_cpu_percent_without_view": round(100 * cpu_without / IDLE_SECONDS, 2),
            "took_s": round(time.monotonic() - started),
        }
    finally:
        bench.cleanup()
    os.makedirs(os.path.dirname(RESULTS_JSON), exist_ok=True)
    with open(RESULTS_JSON, "w") as f:
        json.dump(results, f, indent=2)
        f.write("\n")
    write_docs(results)
    print(json.dumps(results, indent=2))


def write_docs(r):
    start, end = "<!-- live-view:start -->", "<!-- live-view:end -->"
    v, e = r["view_key_to_redraw"], r["openssh_key_echo"]
    ratio = lambda a, b: f"{a / b:.2f}" if b else "—"
    section = f"""{start}
## The live view

Generated by `bench/live-view.py` on {r['date']} — do not edit by hand; rerun the script
(`AGENTS={r['agents']} KEYS={v['n']} IDLE_SECONDS={r['quiet_seconds']:g} bench/live-view.py`, as root; it took {r['took_s']} s).
agentgate {r['agentgate_commit']} (release build), {r['openssh_version']}; {r['agents']} local agents
({r['printing_agents']} printing a line a second, the rest asleep), the view in an {r['terminal']} pseudo-terminal.

| Measurement | agentgate's view | OpenSSH | agentgate ÷ OpenSSH |
|---|---:|---:|---:|
| a key to its answer on screen, median (ms): view redraw / `cat` echo | {v['median_ms']} | {e['median_ms']} | {ratio(v['median_ms'], e['median_ms'])} |
| the same, p90 (ms) | {v['p90_ms']} | {e['p90_ms']} | {ratio(v['p90_ms'], e['p90_ms'])} |
| the same, p99 (ms) | {v['p99_ms']} | {e['p99_ms']} | {ratio(v['p99_ms'], e['p99_ms'])} |
| bytes a second to an open view nobody types in | {r['quiet_bytes_per_second']} | — | — |
| gateway CPU with the view open / closed (% of one CPU) | {r['gateway_cpu_percent_with_view']} / {r['gateway_cpu_percent_without_view']} | — | — |

The view sends only the cells that changed since its last frame; a key that moves the selection
redraws two rows and the detail line. Raw numbers: `bench/results/live-view.json`.
{end}"""
    conc.write_section(start, end, section)


if __name__ == "__main__":
    main()
