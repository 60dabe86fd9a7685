#!/usr/bin/env python3
"""Times `hostctl logs` on a large log of agent-CLI-like terminal output.

Writes 32 MiB of output that looks like Claude Code 2.1's pane (words placed with cursor-forward,
a spinner status redrawn in place 30 times a turn with cursor-up and erase-line, an input box
redrawn below the conversation, colours) with its times (output.log.times: a frame every 100 ms,
3 s after each reply), puts it in an agent's output.log (and a second copy in output.log.1 for
64 MiB), and times `hostctl logs` on it: the median CPU time (user + system) of RUNS runs and
the largest resident memory (GNU time).

    bench/logs-render.py [HOSTCTL...]      # default: target/release/hostctl

Several binaries (an older build, say) are timed side by side on the same log. Needs tmux.
"""
import json, os, random, statistics, subprocess, sys, tempfile, time

RUNS = int(os.environ.get("RUNS", "5"))
SIZE = 32 * 1024 * 1024


def write_log(path, size):
    """Writes the log, and its times as the log writer would have noted them: a frame every
    100 ms (a line every other frame), a 3 s pause after each reply."""
    rnd = random.Random(7)
    times = []
    words = ("the quick brown fox jumps over lazy dog reply finished tool call read file "
             "edit test build passed failed").split()
    frames = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"
    box = "\x1b[38;5;244m" + "─" * 100 + "\x1b[39m"
    written = 0
    with open(path, "wb") as out:
        def w(s):
            nonlocal written
            b = s.encode()
            out.write(b)
            written += len(b)
        while written < size:
            w("\x1b[2K\r❯\x1b[1C" + "\x1b[1C".join(rnd.choice(words) for _ in range(8)) + "\r\n\r\n")
            for i in range(30):
                if i % 2 == 1:
                    times.append(f"{written} 100")
                if i:
                    w("\x1b[4A\r")
                w(f"\x1b[38;5;174m{frames[i % 10]}\x1b[39m\x1b[1CThinking…\x1b[1C({i}s\x1b[1C·"
                  f"\x1b[1C{i * 37}\x1b[1Ctokens)\x1b[K\r\n\x1b[K\r\n{box}\r\n❯\x1b[K\r\n")
            w("\x1b[4A\r\x1b[K")
            for _ in range(rnd.randint(2, 8)):
                w("\x1b[2K\x1b[1m●\x1b[22m\x1b[1C"
                  + "\x1b[1C".join(rnd.choice(words) for _ in range(rnd.randint(4, 14))) + "\x1b[K\r\n")
            w("\x1b[K\r\n" + box + "\r\n❯\x1b[K\r\n\x1b[K\x1b[3A")
            times.append(f"{written} 3000")
    with open(path + ".times", "w") as out:
        out.write("\n".join(times) + "\n")


def run(hostctl, env, args):
    """CPU time (user + system, s) and peak resident memory (KiB) of one run, its output
    thrown away. CPU time, not wall time: on a machine shared with other work it moves less."""
    with tempfile.NamedTemporaryFile("r") as report:
        # GNU time reports the process itself (not the Python that forked it).
        done = subprocess.run(["/usr/bin/time", "-f", "%U %S %M", "-o", report.name, hostctl, *args],
                              env=env, stdout=subprocess.DEVNULL)
        if done.returncode != 0:
            sys.exit(f"{hostctl} {' '.join(args)} failed ({done.returncode})")
        user, system, rss = report.read().split()[-3:]
        return float(user) + float(system), int(rss)


def main():
    binaries = sys.argv[1:] or ["target/release/hostctl"]
    with tempfile.TemporaryDirectory() as home:
        env = dict(os.environ, AGENTGATE_HOME=home, AGENTGATE_TMUX_SOCKET=f"bench-logs-{os.getpid()}")
        request = {"name": "perf", "command": {"kind": "argv", "argv": ["true"]},
                   "workspace": {"kind": "empty"}, "size": {"cols": 100, "rows": 30}}
        subprocess.run([binaries[0], "create", "--json"], input=json.dumps(request).encode(),
                       env=env, check=True, stdout=subprocess.DEVNULL)
        time.sleep(1)
        subprocess.run([binaries[0], "stop", "perf"], env=env, check=True, stdout=subprocess.DEVNULL)
        agent = os.path.join(home, "agents", "perf")
        log = os.path.join(agent, "output.log")
        write_log(log, SIZE)
        cases = [("32 MiB", [], False), ("32 MiB, -n 10", ["-n", "10"], False),
                 ("32 MiB, --raw", ["--raw"], False), ("64 MiB (output.log.1 + output.log)", [], True),
                 ("32 MiB without its times", [], False)]
        print(f"| log | {' | '.join(binaries)} |")
        print("|---|" + "---:|" * len(binaries))
        for name, args, both in cases:
            if both:
                subprocess.run(["cp", log, log + ".1"], check=True)
                subprocess.run(["cp", log + ".times", log + ".1.times"], check=True)
            if name.endswith("without its times"):
                for old in (log + ".1", log + ".1.times", log + ".times"):
                    os.remove(old)
            cells = []
            for hostctl in binaries:
                runs = [run(hostctl, env, ["logs", "perf", *args]) for _ in range(RUNS)]
                cells.append(f"{statistics.median(t for t, _ in runs):.2f} s, {max(m for _, m in runs) / 1024:.1f} MiB")
            print(f"| {name} | {' | '.join(cells)} |")
        subprocess.run(["tmux", "-L", env["AGENTGATE_TMUX_SOCKET"], "kill-server"],
                       stderr=subprocess.DEVNULL)


if __name__ == "__main__":
    main()
