#!/usr/bin/env python3
"""How soon `hostctl logs -f` prints a line after the agent's pane printed it.

Creates an agent (its own AGENTGATE_HOME and tmux server) that prints `stamp SECONDS` (the time
it printed it) every 1.3 s, follows it with `hostctl logs NAME -f`, and reports the delay of each
line it prints after it started: median, p90 and the largest.

    bench/logs-follow.py [HOSTCTL]      # default: target/release/hostctl

Needs tmux.
"""
import json, os, statistics, subprocess, sys, tempfile, time

LINES = 25

def main():
    hostctl = sys.argv[1] if len(sys.argv) > 1 else "target/release/hostctl"
    with tempfile.TemporaryDirectory() as home:
        env = dict(os.environ, AGENTGATE_HOME=home, AGENTGATE_TMUX_SOCKET=f"bench-follow-{os.getpid()}")
        script = (f"i=0; while [ $i -lt {LINES} ]; do i=$((i+1)); "
                  "printf 'stamp %s\\r\\n' \"$(date +%s.%N)\"; sleep 1.3; done; sleep 600")
        request = {"name": "lat", "command": {"kind": "argv", "argv": ["sh", "-c", script]},
                   "workspace": {"kind": "empty"}, "size": {"cols": 100, "rows": 30}}
        subprocess.run([hostctl, "create", "--json"], input=json.dumps(request).encode(), env=env,
                       check=True, stdout=subprocess.DEVNULL)
        follower = subprocess.Popen([hostctl, "logs", "lat", "-f"], stdout=subprocess.PIPE,
                                    env=env, text=True)
        delays = []
        deadline = time.time() + LINES * 1.3 + 15
        try:
            while time.time() < deadline and len(delays) < LINES:
                line = follower.stdout.readline()
                if not line:
                    break
                if line.startswith("stamp "):
                    delays.append(time.time() - float(line.split()[1]))
        finally:
            follower.kill()
            follower.wait()
            subprocess.run(["tmux", "-L", env["AGENTGATE_TMUX_SOCKET"], "kill-server"],
                           stderr=subprocess.DEVNULL)
        # The first lines were there when -f started: printed at once, not followed.
        followed = sorted(delays[2:])
        if not followed:
            sys.exit("logs -f printed no line")
        p90 = followed[max(0, int(len(followed) * 0.9) - 1)]
        print(f"{len(followed)} lines: median {statistics.median(followed) * 1000:.0f} ms, "
              f"p90 {p90 * 1000:.0f} ms, max {followed[-1] * 1000:.0f} ms")


if __name__ == "__main__":
    main()
