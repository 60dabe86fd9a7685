"""The report of bench/sandbox.sh: from its hyperfine exports and its table of transfers, writes
bench/results/sandbox.json and the section between <!-- sandbox:start --> and
<!-- sandbox:end --> of docs/PERFORMANCE.md, and prints the table.

    python3 bench/sandbox_report.py SESSION.json LIFECYCLE.json RAW.tsv OUT.json PERFORMANCE.md

The machine's description comes from the BENCH_* variables bench/sandbox.sh exports. Run alone
(`python3 bench/sandbox_report.py --self-test`), it checks its arithmetic on made-up numbers.
"""

import csv
import json
import os
import re
import statistics
import sys

# The goals: throughput inside the sandbox at least this share of the throughput
# without, and a start-up at most this much longer.
THROUGHPUT_GOAL = 0.95
STARTUP_GOAL_S = 0.050

TRANSFERS = ["exec-up", "exec-down", "scp-up", "scp-down"]
LABELS = {
    "exec-up": "exec upload: `head -c SIZE /dev/zero \\| ssh AGENT@gw 'cat > /dev/null'`",
    "exec-down": "exec download: `ssh AGENT@gw 'head -c SIZE /dev/zero' > /dev/null`",
    "scp-up": "scp upload into the workspace: `scp payload.bin AGENT@gw:`",
    "scp-down": "scp download from the workspace: `scp AGENT@gw:payload.bin downloads/`",
}
med = statistics.median


def hyperfine_times(path):
    """{command name: list of seconds} of a hyperfine --export-json file."""
    with open(path) as f:
        return {r["command"]: r["times"] for r in json.load(f)["results"]}


def timing(times):
    return {"times_s": times, "median_s": med(times), "min_s": min(times), "max_s": max(times),
            "stddev_s": statistics.stdev(times) if len(times) > 1 else 0.0}


def compare_times(none, bwrap, goal_extra_s=None):
    """Two timings (seconds, lower is better): the sandbox's extra time and its ratio."""
    out = {"none": timing(none), "bwrap": timing(bwrap)}
    extra = out["bwrap"]["median_s"] - out["none"]["median_s"]
    out["extra_s"] = extra
    out["ratio"] = out["bwrap"]["median_s"] / out["none"]["median_s"]
    if goal_extra_s is not None:
        out["goal_extra_s"] = goal_extra_s
        out["goal_met"] = extra < goal_extra_s
    return out


def compare_transfers(raw, size_mib):
    """Per transfer, both modes' times and the sandbox's throughput as a share of none's."""
    out = {}
    for m in TRANSFERS:
        rows = sorted((r for r in raw if r["measurement"] == m), key=lambda r: r["round"])
        x = {}
        for mode in ("none", "bwrap"):
            t = [r["seconds"] for r in rows if r["mode"] == mode]
            if not t:
                raise SystemExit(f"sandbox: error: no {m} transfer with --sandbox {mode} in the raw table")
            x[mode] = dict(timing(t), mib_per_s=size_mib / med(t),
                           machine_cpu_s=med([r["machine_cpu_s"] for r in rows if r["mode"] == mode]))
        # Throughput ratio = time ratio inverted: above 1, the sandbox is faster.
        x["ratio"] = x["none"]["median_s"] / x["bwrap"]["median_s"]
        x["ratio_paired_median"] = med([n / b for n, b in zip(x["none"]["times_s"], x["bwrap"]["times_s"])])
        x["goal_ratio"] = THROUGHPUT_GOAL
        x["goal_met"] = x["ratio"] >= THROUGHPUT_GOAL
        out[m] = x
    return out


def read_raw(path):
    with open(path) as f:
        raw = list(csv.DictReader(f, delimiter="\t"))
    for r in raw:
        r["round"] = int(r["round"])
        for k in ("seconds", "machine_cpu_s", "loadavg"):
            r[k] = float(r[k])
    return raw


def ms(x):
    return f"{x * 1000:.1f}"


def signed_ms(x):
    return f"{'+' if x >= 0 else '−'}{abs(x) * 1000:.1f}"


def verdict(ok):
    return "met" if ok else "**NOT met**"


def table(session, create, destroy, transfers):
    lines = [
        "| Measurement | no sandbox | bwrap | bwrap − none | bwrap / none | Goal |",
        "|---|---:|---:|---:|---:|---|",
    ]

    def time_row(label, x, goal):
        n, b = x["none"], x["bwrap"]
        lines.append(
            f"| {label} | {ms(n['median_s'])} ms ({ms(n['min_s'])}–{ms(n['max_s'])}) "
            f"| {ms(b['median_s'])} ms ({ms(b['min_s'])}–{ms(b['max_s'])}) "
            f"| {signed_ms(x['extra_s'])} ms | {x['ratio']:.2f} | {goal} |")

    time_row("create, until the agent's command runs", create,
             f"< +{STARTUP_GOAL_S * 1000:.0f} ms: {verdict(create['goal_met'])}")
    time_row("`ssh AGENT@gw true` (a session; inside bwrap, a bwrap of its own)", session,
             f"< +{STARTUP_GOAL_S * 1000:.0f} ms: {verdict(session['goal_met'])}")
    time_row("destroy --force", destroy, "—")
    for m in TRANSFERS:
        x = transfers[m]
        n, b = x["none"], x["bwrap"]
        lines.append(
            f"| {LABELS[m]} | {n['mib_per_s']:.0f} MiB/s ({n['median_s']:.2f} s) "
            f"| {b['mib_per_s']:.0f} MiB/s ({b['median_s']:.2f} s) "
            f"| {b['median_s'] - n['median_s']:+.2f} s "
            f"| **{x['ratio']:.2f}** (per round {x['ratio_paired_median']:.2f}) "
            f"| ≥ {THROUGHPUT_GOAL:.2f}: {verdict(x['goal_met'])} |")
    return "\n".join(lines)


def cpu_table(transfers):
    lines = ["| Transfer | machine CPU s, no sandbox | machine CPU s, bwrap | bwrap / none |",
             "|---|---:|---:|---:|"]
    for m in TRANSFERS:
        x = transfers[m]
        n, b = x["none"]["machine_cpu_s"], x["bwrap"]["machine_cpu_s"]
        lines.append(f"| {m} | {n:.2f} | {b:.2f} | {b / n:.2f} |")
    return "\n".join(lines)


def summary(session, create, transfers):
    missed = [m for m in TRANSFERS if not transfers[m]["goal_met"]]
    worst = min(TRANSFERS, key=lambda m: transfers[m]["ratio"])
    parts = []
    if missed:
        parts.append(f"Throughput: the goal (at least {THROUGHPUT_GOAL:.2f} of no sandbox) is **not met** for "
                     f"{', '.join(missed)}; the lowest ratio is {transfers[worst]['ratio']:.2f} ({worst}).")
    else:
        parts.append(f"Throughput: the goal (at least {THROUGHPUT_GOAL:.2f} of no sandbox) is **met** for every "
                     f"transfer; the lowest ratio is {transfers[worst]['ratio']:.2f} ({worst}).")
    parts.append(f"Start-up: create until the agent's command runs takes {signed_ms(create['extra_s'])} ms in the "
                 f"sandbox, so the goal (under 50 ms more) is {verdict(create['goal_met'])}; a session "
                 f"(`ssh AGENT@gw true`) takes {signed_ms(session['extra_s'])} ms, "
                 f"{verdict(session['goal_met'])} by the same measure.")
    return " ".join(parts)


def replace_section(text, section):
    pat = re.compile(r"<!-- sandbox:start -->.*?<!-- sandbox:end -->", re.S)
    if pat.search(text):
        return pat.sub(lambda _m: section, text, count=1)
    return text.rstrip("\n") + "\n\n" + section + "\n"


def main(session_json, lifecycle_json, raw_tsv, out_json, perf_md):
    env = os.environ
    size_mib = int(env["BENCH_SIZE_MB"])
    rounds = int(env["BENCH_ROUNDS"])
    runs = int(env["BENCH_RUNS"])
    s = hyperfine_times(session_json)
    life = hyperfine_times(lifecycle_json)
    raw = read_raw(raw_tsv)
    # ABBA: both runs of each mode pooled, so drift over the run falls on both.
    session = compare_times(s["session none 1"] + s["session none 2"],
                            s["session bwrap 1"] + s["session bwrap 2"], STARTUP_GOAL_S)
    create = compare_times(life["create none"], life["create bwrap"], STARTUP_GOAL_S)
    destroy = compare_times(life["destroy none"], life["destroy bwrap"])
    transfers = compare_transfers(raw, size_mib)
    loads = [r["loadavg"] for r in raw]
    meta = {
        "date": env["BENCH_DATE"],
        "machine": {
            "nproc": int(env["BENCH_NPROC"]), "cpu": env["BENCH_CPU"], "memory": env["BENCH_MEM"],
            "os": env["BENCH_OS"], "kernel": env["BENCH_KERNEL"],
            "loadavg_before": env["BENCH_LOAD_BEFORE"], "loadavg_after": env["BENCH_LOADAVG"],
            "loadavg_1min_during_transfers": {"min": min(loads), "median": med(loads), "max": max(loads)},
            "tmpdir": env["BENCH_TMPFS"],
        },
        "openssh": env["BENCH_OPENSSH"], "agentgate": env["BENCH_AGENTGATE"], "commit": env["BENCH_COMMIT"],
        "hyperfine": env["BENCH_HYPERFINE"], "bwrap": env["BENCH_BWRAP"],
        "runs": runs, "warmup": int(env["BENCH_WARMUP"]), "rounds": rounds, "size_mib": size_mib,
        "transfers_elapsed_s": int(env["BENCH_ELAPSED"]),
        "sessions": {"none": env["PROBE_NONE"], "bwrap": env["PROBE_BWRAP"]},
        "goals": {"throughput_ratio_at_least": THROUGHPUT_GOAL, "startup_extra_s_under": STARTUP_GOAL_S},
    }
    mach = meta["machine"]
    tbl = table(session, create, destroy, transfers)
    cpu = cpu_table(transfers)
    verdict_text = summary(session, create, transfers)
    # A load above half the CPUs means other work competed with the measurements.
    idle = float(mach["loadavg_before"].split()[0]) < mach["nproc"] / 2
    load_note = ("otherwise idle" if idle else
                 "**not idle**: other work competed for the CPUs, so the numbers are noisy")
    section = f"""<!-- sandbox:start -->
## What the sandbox costs

Generated by `bench/sandbox.sh` on {meta['date']} — do not edit by hand; rerun the script
(`RUNS={runs} ROUNDS={rounds} SIZE_MB={size_mib} bench/sandbox.sh` as root, or `bench/run sandbox`).

- Machine: {mach['nproc']} CPUs, {mach['cpu']}, {mach['memory']} RAM; {mach['os']}, {mach['kernel']};
  {load_note} (load average {mach['loadavg_before']} before the measurements, {mach['loadavg_after']} after;
  1-min load at the start of each transfer: min {mach['loadavg_1min_during_transfers']['min']:.2f},
  median {mach['loadavg_1min_during_transfers']['median']:.2f}, max {mach['loadavg_1min_during_transfers']['max']:.2f})
- agentgate: {meta['agentgate']}, commit {meta['commit']}, release build; {meta['bwrap']}; {meta['hyperfine']};
  client {meta['openssh']}

**Method.** One gateway on loopback with its own host (`local`), two agents running
`sleep 100000`: `sb-none` made with `--sandbox none` and `sb-bwrap` with `--sandbox bwrap`. A probe
checks what each session sees (`{meta['sessions']['none']}` against
`{meta['sessions']['bwrap']}`: its own PID namespace, the private home at `$HOME`). Every
command uses the same ssh client options as the other sections, and everything is measured the
same way for both modes, in one run:

- *Session*: `ssh AGENT@gw true`, timed by hyperfine ({meta['warmup']} warm-up and {runs} measured
  runs per command) in the order none, bwrap, bwrap, none; both runs of each mode are pooled.
  Inside a sandboxed agent every session (exec, sftp) is a bwrap of its own.
- *Create*: `ssh gw "create N --sandbox MODE -- sh -c 'touch .up; exec sleep 100000'"`, then
  waiting (polling every 2 ms with a shell builtin) until `.up` appears in the workspace: the time
  from create to the agent's own command running, inside its bwrap when sandboxed. The previous
  run's agent is destroyed in hyperfine's `--prepare`, untimed. {runs} runs per mode.
- *Destroy*: `ssh gw destroy N --force` of an agent created, and seen running, in `--prepare`.
- *Transfers*: as in "Throughput inside an agent": SIZE = {size_mib} MiB, {rounds} round{'s' if rounds != 1 else ''},
  each transfer into sb-none and into sb-bwrap, sb-none first in odd rounds and sb-bwrap first in
  even ones; a transfer's time is the client command's wall time, connection set-up included.
  scp uploads a file of SIZE random bytes into the agent's workspace and downloads it back (the
  first round compares it with the payload). Before each scp, untimed, SIZE bytes are written to
  and deleted from the temp dir (see "Throughput inside an agent"). Everything is on
  {mach['tmpdir']}, so no disk takes part.

Times are medians (min–max); "bwrap / none" is the sandbox's time over no sandbox's for the first
three rows, and its throughput over no sandbox's for the transfers (no sandbox's median time over
the sandbox's; "per round" is the median of that ratio within each round).

{tbl}

{verdict_text}

CPU time the whole machine spent during a transfer (from `/proc/stat`: the client, the gateway,
hostctl, bwrap, the remote command or sftp-server; medians). The gateway's reaped children, which
"Throughput inside an agent" counts, would leave out everything inside a sandbox: bwrap's monitor
process does not wait for the sandbox's init, so their CPU time is never added to the gateway's.

{cpu}

Raw times for every run: `bench/results/sandbox.json`.
<!-- sandbox:end -->"""

    with open(perf_md) as f:
        text = f.read()
    with open(perf_md, "w") as f:
        f.write(replace_section(text, section))
    with open(out_json, "w") as f:
        json.dump({"meta": meta, "session": session, "create": create, "destroy": destroy,
                   "transfers": transfers, "raw_transfers": raw}, f, indent=2)
        f.write("\n")
    print(tbl)
    print()
    print(verdict_text)


def self_test():
    """The arithmetic and the section's placement, on numbers whose answers are known."""
    t = compare_times([0.100, 0.110, 0.120], [0.140, 0.150, 0.160], STARTUP_GOAL_S)
    assert abs(t["extra_s"] - 0.040) < 1e-9 and t["goal_met"], t
    t = compare_times([0.100], [0.151], STARTUP_GOAL_S)
    assert not t["goal_met"], t
    raw = []
    for rnd in (1, 2, 3):
        for m in TRANSFERS:
            raw.append({"round": rnd, "measurement": m, "mode": "none", "seconds": 2.0, "machine_cpu_s": 1.0})
            # The sandbox 5 % slower on exec-up (ratio 0.952: met), 10 % slower elsewhere.
            slow = 2.1 if m == "exec-up" else 2.2
            raw.append({"round": rnd, "measurement": m, "mode": "bwrap", "seconds": slow, "machine_cpu_s": 1.0})
    x = compare_transfers(raw, 1024)
    assert x["exec-up"]["goal_met"] and abs(x["exec-up"]["ratio"] - 2.0 / 2.1) < 1e-9, x["exec-up"]
    assert not x["scp-up"]["goal_met"], x["scp-up"]
    assert x["exec-down"]["none"]["mib_per_s"] == 512
    text = "a\n<!-- sandbox:start -->\nold\n<!-- sandbox:end -->\nb\n"
    assert replace_section(text, "<!-- sandbox:start -->new<!-- sandbox:end -->") == \
        "a\n<!-- sandbox:start -->new<!-- sandbox:end -->\nb\n"
    assert replace_section("a\n", "S") == "a\n\nS\n"
    print("sandbox_report: self-test passed")


if __name__ == "__main__":
    if sys.argv[1:] == ["--self-test"]:
        self_test()
    elif len(sys.argv) == 6:
        main(*sys.argv[1:])
    else:
        raise SystemExit(__doc__)
