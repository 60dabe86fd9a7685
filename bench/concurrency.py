#!/usr/bin/env python3
"""Many sessions at once: agentgate against a plain OpenSSH sshd, on one machine, over loopback.

    bench/concurrency.py                          # as root; needs sshd, tmux, cargo, ssh
    SESSIONS=1000 EXECS=1000 bench/concurrency.py  # the defaults
    BENCH_TMPDIR=/tmp bench/concurrency.py        # where the temp dir goes (default /dev/shm)

What it does, in one run:
  1. cargo build --release --workspace; a temp dir; a fresh ed25519 client key.
  2. A private OpenSSH sshd on 127.0.0.1 (own host key and config, run as root; MaxStartups and
     MaxSessions raised so that it accepts the load) and agentgate on 127.0.0.1 (empty data dir,
     its own tmux server; max_startups and per_source_max_startups raised and penalties off, for
     the same reason: every client comes from 127.0.0.1); `ssh gw create conc -- cat`.
  3. Attached sessions, gateway first, then OpenSSH: SESSIONS clients, opened in batches of
     BATCH, each `ssh -tt` (a terminal), attached to the agent's tmux session: through the
     gateway `ssh -tt conc@gw`, through OpenSSH `ssh -tt root@sshd tmux attach -t =conc` (the same
     session of the same tmux server). A session counts as open once its client has received the
     screen. With all open: the server's memory (the listening process's RSS, and the PSS of its
     whole process tree, the tmux clients the sessions run included), and its CPU time over
     IDLE_SECONDS of quiet. Then every client is closed.
  4. Short commands: EXECS clients of `ssh TARGET true` started at once, against each server; how
     many succeed, the wall time until the last ends, and the server's peak memory meanwhile.
  5. bench/results/concurrency.json, a table on stdout, and the section between
     <!-- concurrency:start --> and <!-- concurrency:end --> in docs/PERFORMANCE.md.
Memory is read from /proc: VmRSS of one process; the sum of Pss (smaps_rollup) over a process
tree, which counts pages shared by several processes once in all.
"""

import datetime
import json
import os
import re
import resource
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

SESSIONS = int(os.environ.get("SESSIONS", "1000"))
EXECS = int(os.environ.get("EXECS", "1000"))
BATCH = int(os.environ.get("BATCH", "50"))
IDLE_SECONDS = float(os.environ.get("IDLE_SECONDS", "10"))
BENCH_TMPDIR = os.environ.get("BENCH_TMPDIR", "/dev/shm")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS_JSON = os.path.join(REPO, "bench/results/concurrency.json")
PERF_MD = os.path.join(REPO, "docs/PERFORMANCE.md")
AGENT = "conc"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def log(msg):
    print(f"concurrency: {msg}", file=sys.stderr, flush=True)


def die(msg):
    log(f"error: {msg}")
    sys.exit(1)


# --- /proc ------------------------------------------------------------------------------------


def children_map():
    kids = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        kids.setdefault(ppid, []).append(int(entry))
    return kids


def tree(pid):
    kids = children_map()
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, []))
    return out


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def pss_kib(pids):
    total = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Pss:"):
                        total += int(line.split()[1])
                        break
        except OSError:
            pass
    return total


def cpu_seconds(pid):
    """User + system CPU time of one process (its own threads, not its children)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def memory(pid):
    pids = tree(pid)
    return {"rss_kib": rss_kib(pid), "tree_pss_kib": pss_kib(pids), "processes": len(pids)}


# --- servers ----------------------------------------------------------------------------------


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc, name, log_path):
    for _ in range(150):
        if proc.poll() is not None:
            die(f"{name} exited during start-up:\n{open(log_path).read()[-2000:]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    die(f"{name} did not listen on 127.0.0.1:{port} within 15 s")


class Bench:
    def __init__(self):
        self.tmp = tempfile.mkdtemp(prefix="agentgate-concurrency.", dir=BENCH_TMPDIR)
        self.procs = []
        self.tmux_name = f"agentgate-conc-{os.getpid()}"
        self.key = os.path.join(self.tmp, "client_key")
        self.known = os.path.join(self.tmp, "known_hosts")

    def cleanup(self):
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
        for p in self.procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
        subprocess.run(
            ["tmux", "-L", self.tmux_name, "kill-server"],
            env=dict(os.environ, TMUX_TMPDIR=f"{self.tmp}/tmux"),
            stderr=subprocess.DEVNULL,
        )
        shutil.rmtree(self.tmp, ignore_errors=True)

    def ssh_opts(self, port):
        return [
            "-F", "/dev/null", "-i", self.key, "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
            "-o", f"UserKnownHostsFile={self.known}", "-o", "StrictHostKeyChecking=accept-new",
            "-o", "LogLevel=ERROR", "-p", str(port),
        ]

    def start_sshd(self):
        os.makedirs("/run/sshd", exist_ok=True)
        hostkey = os.path.join(self.tmp, "sshd_host_key")
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", hostkey], check=True)
        shutil.copy(self.key + ".pub", os.path.join(self.tmp, "authorized_keys"))
        self.sshd_port = free_port()
        config = os.path.join(self.tmp, "sshd_config")
        with open(config, "w") as f:
            f.write(
                f"ListenAddress 127.0.0.1:{self.sshd_port}\nHostKey {hostkey}\n"
                f"AuthorizedKeysFile {self.tmp}/authorized_keys\nPasswordAuthentication no\n"
                "KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n"
                "PermitRootLogin prohibit-password\n"
                f"PidFile {self.tmp}/sshd.pid\nMaxStartups {EXECS + 100}\n"
                "PerSourcePenalties no\nSetEnv SHLVL=1\n"
            )
        sshd = shutil.which("sshd") or "/usr/sbin/sshd"
        check = subprocess.run([sshd, "-t", "-f", config], capture_output=True, text=True)
        if check.returncode != 0 and "PerSourcePenalties" in check.stderr:
            # OpenSSH before 9.8 has no penalties to switch off.
            text = open(config).read().replace("PerSourcePenalties no\n", "")
            open(config, "w").write(text)
        log_path = os.path.join(self.tmp, "sshd.log")
        self.sshd = subprocess.Popen([sshd, "-D", "-e", "-f", config], stderr=open(log_path, "w"))
        self.procs.append(self.sshd)
        wait_port(self.sshd_port, self.sshd, "sshd", log_path)

    def start_gateway(self):
        home = os.path.join(self.tmp, "gwhome")
        os.makedirs(os.path.join(home, ".ssh"))
        shutil.copy(self.key + ".pub", os.path.join(home, ".ssh/id_ed25519.pub"))
        os.makedirs(os.path.join(self.tmp, "tmux"), mode=0o700)
        self.gw_port = free_port()
        config = os.path.join(self.tmp, "agentgate.toml")
        with open(config, "w") as f:
            f.write(
                f"[ssh]\nmax_startups = {EXECS + 100}\nper_source_max_startups = {EXECS + 100}\n"
                f"max_connections = {max(SESSIONS, EXECS) + 1000}\n"
                "[ssh.penalties]\nenabled = false\n"
            )
        log_path = os.path.join(self.tmp, "agentgate.log")
        env = dict(
            os.environ,
            HOME=home,
            AGENTGATE_HOME=os.path.join(self.tmp, "agents"),
            AGENTGATE_TMUX_SOCKET=self.tmux_name,
            TMUX_TMPDIR=os.path.join(self.tmp, "tmux"),
            RUST_LOG="warn",
        )
        self.gw = subprocess.Popen(
            [
                os.path.join(REPO, "target/release/agentgate"), "serve", "--config", config,
                "--listen", f"127.0.0.1:{self.gw_port}", "--data-dir", os.path.join(self.tmp, "data"),
            ],
            env=env,
            stderr=open(log_path, "w"),
        )
        self.procs.append(self.gw)
        wait_port(self.gw_port, self.gw, "agentgate", log_path)
        out = subprocess.run(
            ["ssh", *self.ssh_opts(self.gw_port), "127.0.0.1", "create", AGENT, "--", "cat"],
            capture_output=True, text=True, stdin=subprocess.DEVNULL,
        )
        if out.returncode != 0:
            die(f"create {AGENT}: {out.stderr}")

    # --- attached sessions ------------------------------------------------------------------

    def attach_argv(self, side):
        if side == "agentgate":
            return ["ssh", *self.ssh_opts(self.gw_port), "-tt", f"{AGENT}@127.0.0.1"]
        return [
            "ssh", *self.ssh_opts(self.sshd_port), "-tt", "root@127.0.0.1",
            f"TMUX_TMPDIR={self.tmp}/tmux tmux -L {self.tmux_name} attach-session -t ={AGENT}",
        ]

    def attached(self, side, server_pid):
        before = memory(server_pid)
        sel = selectors.DefaultSelector()
        clients, drawn, growth = [], 0, []
        # Where memory is read on the way up, to show how it grows as sessions double.
        checkpoints = sorted({max(1, round(SESSIONS / d)) for d in (8, 4, 2, 1)})
        started = time.monotonic()
        while len(clients) < SESSIONS:
            batch = []
            next_checkpoint = next(c for c in checkpoints if c > len(clients))
            for _ in range(min(BATCH, next_checkpoint - len(clients))):
                # The same terminal type for both sides (tmux refuses a terminal without one,
                # and bench/run may run with an empty environment).
                p = subprocess.Popen(
                    self.attach_argv(side),
                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                    env=dict(os.environ, TERM="xterm-256color"),
                )
                os.set_blocking(p.stdout.fileno(), False)
                sel.register(p.stdout, selectors.EVENT_READ, p)
                batch.append(p)
            clients.extend(batch)
            waiting = set(batch)
            deadline = time.monotonic() + 60
            while waiting and time.monotonic() < deadline:
                for key, _ in sel.select(timeout=1):
                    p = key.data
                    try:
                        chunk = os.read(key.fd, 65536)
                    except BlockingIOError:
                        continue
                    if not chunk:
                        sel.unregister(key.fileobj)
                    waiting.discard(p)
            if waiting:
                die(f"{side}: {len(waiting)} of a batch of {len(batch)} sessions drew no screen within 60 s")
            drawn = len(clients)
            if drawn in checkpoints and drawn < SESSIONS:
                paused = time.monotonic()
                self.drain(sel, 2)
                m = memory(server_pid)
                growth.append({"sessions": drawn, **m})
                started += time.monotonic() - paused
        opened_in = time.monotonic() - started
        # Let the servers settle, then keep draining the screens while measuring.
        self.drain(sel, 3)
        ended = [p for p in clients if p.poll() is not None]
        if ended:
            die(f"{side}: {len(ended)} of {len(clients)} attached sessions ended early "
                f"(exit status {ended[0].returncode} for one)")
        during = memory(server_pid)
        cpu0 = cpu_seconds(server_pid)
        self.drain(sel, IDLE_SECONDS)
        idle_cpu = cpu_seconds(server_pid) - cpu0
        growth.append({"sessions": SESSIONS, **during})
        alive = sum(1 for p in clients if p.poll() is None)
        for p in clients:
            p.terminate()
        for p in clients:
            p.wait()
        sel.close()
        return {
            "sessions": SESSIONS,
            "open": drawn,
            "still_open_at_the_end": alive,
            "opened_in_s": round(opened_in, 2),
            "memory_before": before,
            "memory_with_sessions": during,
            "rss_kib_per_session": round((during["rss_kib"] - before["rss_kib"]) / SESSIONS, 1),
            "tree_pss_kib_per_session": round(
                (during["tree_pss_kib"] - before["tree_pss_kib"]) / SESSIONS, 1
            ),
            "idle_cpu_percent": round(100 * idle_cpu / IDLE_SECONDS, 2),
            "growth": growth,
        }

    @staticmethod
    def drain(sel, seconds):
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            for key, _ in sel.select(timeout=min(left, 0.5)):
                try:
                    if not os.read(key.fd, 65536):
                        sel.unregister(key.fileobj)
                except BlockingIOError:
                    pass

    # --- short commands ---------------------------------------------------------------------

    def execs(self, side, server_pid):
        if side == "agentgate":
            argv = ["ssh", *self.ssh_opts(self.gw_port), f"{AGENT}@127.0.0.1", "true"]
        else:
            argv = ["ssh", *self.ssh_opts(self.sshd_port), "root@127.0.0.1", "true"]
        before = memory(server_pid)
        cpu0 = cpu_seconds(server_pid)
        started = time.monotonic()
        clients = [
            subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE)
            for _ in range(EXECS)
        ]
        peak_rss, peak_pss = before["rss_kib"], before["tree_pss_kib"]
        while any(p.poll() is None for p in clients):
            m = memory(server_pid)
            peak_rss, peak_pss = max(peak_rss, m["rss_kib"]), max(peak_pss, m["tree_pss_kib"])
            time.sleep(0.2)
        wall = time.monotonic() - started
        failed = [p for p in clients if p.returncode != 0]
        errors = sorted({p.stderr.read().decode(errors="replace").strip()[:200] for p in failed})
        return {
            "commands": EXECS,
            "succeeded": EXECS - len(failed),
            "errors": errors[:5],
            "wall_s": round(wall, 2),
            "server_cpu_s": round(cpu_seconds(server_pid) - cpu0, 2),
            "memory_before": before,
            "peak_rss_kib": peak_rss,
            "peak_tree_pss_kib": peak_pss,
        }


def negotiated(bench, port, user):
    out = subprocess.run(
        # The first LogLevel given wins, so it goes before ssh_opts' ERROR.
        ["ssh", "-o", "LogLevel=DEBUG1", *bench.ssh_opts(port), f"{user}@127.0.0.1", "true"],
        capture_output=True, text=True, stdin=subprocess.DEVNULL,
    )
    kex = re.search(r"kex: algorithm: (\S+)", out.stderr)
    cipher = re.search(r"kex: server->client cipher: (\S+)", out.stderr)
    return f"{kex.group(1) if kex else '?'}, {cipher.group(1) if cipher else '?'}"


def table(results):
    g, o = results["agentgate"], results["openssh"]
    ga, oa, ge, oe = g["attached"], o["attached"], g["execs"], o["execs"]

    def ratio(a, b):
        return f"{a / b:.2f}" if b else "—"

    rows = [
        ("attached sessions open / asked", f"{ga['open']} / {ga['sessions']}", f"{oa['open']} / {oa['sessions']}", "—"),
        ("time to open them all (s)", ga["opened_in_s"], oa["opened_in_s"], ratio(ga["opened_in_s"], oa["opened_in_s"])),
        ("server RSS per attached session (KiB)", ga["rss_kib_per_session"], oa["rss_kib_per_session"], ratio(ga["rss_kib_per_session"], oa["rss_kib_per_session"])),
        ("server process tree PSS per attached session (KiB)", ga["tree_pss_kib_per_session"], oa["tree_pss_kib_per_session"], ratio(ga["tree_pss_kib_per_session"], oa["tree_pss_kib_per_session"])),
        ("server processes with the sessions open", ga["memory_with_sessions"]["processes"], oa["memory_with_sessions"]["processes"], "—"),
        (f"listening process CPU while idle, {IDLE_SECONDS:g} s (% of one CPU)", ga["idle_cpu_percent"], oa["idle_cpu_percent"], "—"),
        ("short commands succeeded / started at once", f"{ge['succeeded']} / {ge['commands']}", f"{oe['succeeded']} / {oe['commands']}", "—"),
        ("time until the last ended (s)", ge["wall_s"], oe["wall_s"], ratio(ge["wall_s"], oe["wall_s"])),
        ("listening process CPU meanwhile (s)", ge["server_cpu_s"], oe["server_cpu_s"], "—"),
        ("peak server process tree PSS (MiB)", round(ge["peak_tree_pss_kib"] / 1024, 1), round(oe["peak_tree_pss_kib"] / 1024, 1), ratio(ge["peak_tree_pss_kib"], oe["peak_tree_pss_kib"])),
    ]
    lines = ["| Measurement | agentgate | OpenSSH | agentgate ÷ OpenSSH |", "|---|---:|---:|---:|"]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]
    lines += [
        "",
        "As the attached sessions double (memory above what the server used before the first "
        "session; KiB per session):",
        "",
        "| Sessions | agentgate RSS | agentgate tree PSS | OpenSSH listener RSS | OpenSSH tree PSS "
        "| agentgate tree PSS ÷ OpenSSH |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    g0, o0 = ga["memory_before"], oa["memory_before"]
    for gm, om in zip(ga["growth"], oa["growth"]):
        n = gm["sessions"]
        per = lambda m, base, k: (m[k] - base[k]) / n
        lines.append(
            f"| {n} | {per(gm, g0, 'rss_kib'):.0f} | {per(gm, g0, 'tree_pss_kib'):.0f} "
            f"| {per(om, o0, 'rss_kib'):.0f} | {per(om, o0, 'tree_pss_kib'):.0f} "
            f"| {ratio(per(gm, g0, 'tree_pss_kib'), per(om, o0, 'tree_pss_kib'))} |"
        )
    return "\n".join(lines)


def write_docs(results, markdown):
    start, end = "<!-- concurrency:start -->", "<!-- concurrency:end -->"
    m = results["machine"]
    section = f"""{start}
## Many sessions at once

Generated by `bench/concurrency.py` on {results['date']} — do not edit by hand; rerun the script
(`SESSIONS={SESSIONS} EXECS={EXECS} bench/concurrency.py`, as root; it took {results['took_s']:.0f} s).

- Machine: {m['cpus']} CPUs, {m['cpu']}, {m['mem_gib']} GiB RAM; load average {m['load_before']} before,
  {m['load_after']} after
- agentgate {results['agentgate_commit']} (release build) against {results["openssh_version"]}; negotiated
  (kex, cipher): agentgate {results['negotiated']['agentgate']}, OpenSSH {results['negotiated']['openssh']}
- Attached: `ssh -tt conc@gw` against `ssh -tt root@sshd tmux attach -t =conc`, both attaching to the
  same tmux session (the agent, running `cat`), opened {BATCH} at a time; each counts once its client
  has the screen. Short commands: {EXECS} `ssh TARGET true` started at once.
- "RSS per session": the growth of the listening process's RSS (agentgate's one process; sshd's
  listener, which forks a process per connection) divided by the sessions. "Tree PSS": the same for
  the Pss of the listening process and every process below it (for agentgate: hostctl and the tmux
  client of each session; for OpenSSH: each connection's sshd processes, shell and tmux client).

{markdown}

Raw numbers: `bench/results/concurrency.json`.
{end}"""
    write_section(start, end, section)


def write_section(start, end, section):
    """Puts `section` between the markers `start` and `end` of docs/PERFORMANCE.md (at its end
    the first time)."""
    text = open(PERF_MD).read()
    if start in text:
        text = re.sub(re.escape(start) + ".*?" + re.escape(end), lambda _: section, text, flags=re.S)
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    open(PERF_MD, "w").write(text)


def main():
    if os.geteuid() != 0:
        die("run as root (the baseline sshd runs as root)")
    for tool in ["ssh", "ssh-keygen", "tmux", "cargo"]:
        if not shutil.which(tool):
            die(f"{tool} not found")
    # Every client holds pipes here, and each server a socket (and a pty) per session.
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = 4 * max(SESSIONS, EXECS) + 1024
    if hard != resource.RLIM_INFINITY and hard < need:
        die(f"the open-files limit is {hard}; {need} are needed (raise it with ulimit -n)")
    resource.setrlimit(resource.RLIMIT_NOFILE, (need if hard == resource.RLIM_INFINITY else hard, hard))
    began = time.monotonic()
    log("building release binaries")
    subprocess.run(["cargo", "build", "--release", "--workspace", "--quiet"], cwd=REPO, check=True)
    bench = Bench()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", bench.key], check=True)
        load_before = open("/proc/loadavg").read().split()[:3]
        bench.start_sshd()
        bench.start_gateway()
        sshd_pid, gw_pid = bench.sshd.pid, bench.gw.pid
        results = {"negotiated": {
            "agentgate": negotiated(bench, bench.gw_port, AGENT),
            "openssh": negotiated(bench, bench.sshd_port, "root"),
        }}
        for side, pid in [("agentgate", gw_pid), ("openssh", sshd_pid)]:
            log(f"{side}: {SESSIONS} attached sessions")
            attached = bench.attached(side, pid)
            time.sleep(3)
            log(f"{side}: {EXECS} short commands at once")
            execs = bench.execs(side, pid)
            results[side] = {"attached": attached, "execs": execs}
        mem_gib = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30)
        cpu = "?"
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        results.update({
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "machine": {"cpus": os.cpu_count(), "cpu": cpu, "mem_gib": mem_gib,
                        "load_before": " ".join(load_before),
                        "load_after": " ".join(open("/proc/loadavg").read().split()[:3])},
            "openssh_version": subprocess.run(["ssh", "-V"], capture_output=True, text=True).stderr.strip(),
            "agentgate_commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO,
                                               capture_output=True, text=True).stdout.strip(),
            "sessions": SESSIONS, "execs": EXECS, "batch": BATCH, "idle_seconds": IDLE_SECONDS,
            "took_s": time.monotonic() - began,
        })
    finally:
        bench.cleanup()
    os.makedirs(os.path.dirname(RESULTS_JSON), exist_ok=True)
    with open(RESULTS_JSON, "w") as f:
        json.dump(results, f, indent=2)
        f.write("\n")
    markdown = table(results)
    write_docs(results, markdown)
    print(markdown)


if __name__ == "__main__":
    main()
