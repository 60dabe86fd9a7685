#!/usr/bin/env bash
# What an agent's bubblewrap sandbox costs: the same measurements on an agent made with
# `--sandbox none` and on one made with `--sandbox bwrap`, side by side in one run, on the
# gateway's own host (`local`), over loopback.
#
#   bench/sandbox.sh                                  # needs root, bwrap, hyperfine, tmux, cargo, python3
#   RUNS=30 WARMUP=3 ROUNDS=5 SIZE_MB=1024 bench/sandbox.sh   # the defaults
#   BENCH_TMPDIR=/var/tmp bench/sandbox.sh            # where the temp dir goes (default /dev/shm, a tmpfs)
#
# What it does, in one run:
#   1. cargo build --release --workspace; a temp dir; a fresh ed25519 client key; a SIZE_MB file
#      of random bytes (the payload of the scp measurements).
#   2. agentgate serve on 127.0.0.1 with an empty data dir (HOME points at the temp dir, so the
#      client key becomes the admin key) and its own tmux server (AGENTGATE_TMUX_SOCKET); then two
#      agents running `sleep 100000`: `sb-none` (--sandbox none) and `sb-bwrap` (--sandbox bwrap).
#      A probe checks that sb-bwrap's sessions run in their own PID namespace and private home
#      and sb-none's do not.
#   3. hyperfine, the same ssh client options for every command:
#        session   ssh sb-none@gw true, ssh sb-bwrap@gw true, then both again in reverse order
#                  (ABBA: drift over the run falls on both equally); each session inside
#                  sb-bwrap is a bwrap of its own
#        create    ssh gw create N --sandbox MODE -- sh -c 'touch .up; exec sleep 100000', and
#                  then wait until `.up` appears in the workspace: from create to the agent's
#                  command running (inside bwrap, when sandboxed); the previous run's agent is
#                  destroyed in hyperfine's --prepare, untimed
#        destroy   ssh gw destroy N --force, of an agent made (and running) in --prepare
#   4. ROUNDS rounds of bulk transfers, each against sb-none and sb-bwrap, sb-none first in odd
#      rounds and sb-bwrap first in even ones (as bench/throughput.sh, whose method this is):
#        exec-up   head -c SIZE /dev/zero | ssh AGENT@gw 'cat > /dev/null'
#        exec-down ssh AGENT@gw 'head -c SIZE /dev/zero' > /dev/null
#        scp-up    scp payload.bin AGENT@gw:    (into the agent's workspace)
#        scp-down  scp AGENT@gw:payload.bin LOCALDIR
#      Wall time of the client command, and the CPU time the whole machine spent during it
#      (/proc/stat: client, gateway, hostctl, bwrap, the remote command or sftp-server). Not the
#      gateway's reaped children, as bench/throughput.sh counts: bwrap's monitor process does not
#      wait for the sandbox's init, so what runs inside a sandbox is never added to them.
#   5. bench/results/sandbox.json, a markdown table on stdout, and the section between
#      <!-- sandbox:start --> and <!-- sandbox:end --> in docs/PERFORMANCE.md.
#   6. On exit: stop agentgate, kill the bench tmux server, remove the temp dir.
set -euo pipefail

RUNS=${RUNS:-30}
WARMUP=${WARMUP:-3}
ROUNDS=${ROUNDS:-5}
SIZE_MB=${SIZE_MB:-1024}
BENCH_TMPDIR=${BENCH_TMPDIR:-/dev/shm}

die() { printf 'sandbox: error: %s\n' "$*" >&2; exit 1; }
log() { printf 'sandbox: %s\n' "$*" >&2; }

for v in RUNS ROUNDS SIZE_MB; do
    [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive integer (got '${!v}')"
done
[[ $WARMUP =~ ^[0-9]+$ ]] || die "WARMUP must be a non-negative integer (got '$WARMUP')"
BYTES=$((SIZE_MB * 1024 * 1024))

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=bench/lib.sh
source "$REPO/bench/lib.sh"
RESULTS_DIR="$REPO/bench/results"
RESULTS_JSON="$RESULTS_DIR/sandbox.json"
PERF_MD="$REPO/docs/PERFORMANCE.md"

# --- prerequisites --------------------------------------------------------------------------------
[[ $(id -u) -eq 0 ]] || die "run as root (as the other benchmarks: the agents' commands run as root, like bench/throughput.sh's)"
for tool in ssh scp ssh-keygen hyperfine tmux cargo python3 pgrep; do
    command -v "$tool" >/dev/null || die "$tool not found (apt-get install -y openssh-client hyperfine tmux python3 procps; cargo from rustup)"
done
command -v bwrap >/dev/null || die "bwrap not found: apt-get install -y bubblewrap"
[[ -d $BENCH_TMPDIR ]] || die "BENCH_TMPDIR=$BENCH_TMPDIR is not a directory"
case $BENCH_TMPDIR in
    /tmp | /tmp/*) die "BENCH_TMPDIR=$BENCH_TMPDIR is under /tmp, which a sandboxed agent's own /tmp replaces; use /dev/shm or /var/tmp" ;;
esac
# The payload, two uploaded copies and one download exist at the same time.
need_kb=$((BYTES / 1024 * 4 + 256 * 1024))
avail_kb=$(df -Pk "$BENCH_TMPDIR" | awk 'NR == 2 { print $4 }')
((avail_kb > need_kb)) || die "$BENCH_TMPDIR has $((avail_kb / 1024)) MiB free, the benchmark needs $((need_kb / 1024)) MiB (set BENCH_TMPDIR or SIZE_MB)"

# --- cleanup --------------------------------------------------------------------------------------
TMP=""
GW_PID=""
TMUX_NAME="agentgate-bench-$$"

cleanup() { bench_cleanup $? "$GW_PID:agentgate"; }
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- 1. build, temp dir, client key, payload ------------------------------------------------------
log "building release binaries"
(cd "$REPO" && cargo build --release --workspace --quiet) || die "cargo build --release --workspace failed"
AGENTGATE="$REPO/target/release/agentgate"
[[ -x $AGENTGATE && -x $REPO/target/release/hostctl ]] || die "target/release/{agentgate,hostctl} missing after the build"

TMP=$(mktemp -d "$BENCH_TMPDIR/agentgate-sandbox.XXXXXX")
mkdir -p "$TMP/gwhome/.ssh" "$TMP/agents" "$TMP/tmux" "$TMP/data" "$TMP/downloads"
chmod 700 "$TMP/tmux"
ssh-keygen -q -t ed25519 -N '' -C agentgate-bench -f "$TMP/client_key"
cp "$TMP/client_key.pub" "$TMP/gwhome/.ssh/id_ed25519.pub"
PAYLOAD="$TMP/payload.bin"
log "generating the $SIZE_MB MiB payload from /dev/urandom"
head -c "$BYTES" /dev/urandom >"$PAYLOAD"
[[ $(stat -c %s "$PAYLOAD") -eq $BYTES ]] || die "the payload is not $BYTES bytes"
# hyperfine's commands wait on this with `read -t` (a pause without starting a process).
mkfifo "$TMP/tick"

# --- 2. agentgate and the two agents --------------------------------------------------------------
: >"$TMP/agentgate.log"  # exists before anyone reads it
HOME="$TMP/gwhome" AGENTGATE_HOME="$TMP/agents" AGENTGATE_TMUX_SOCKET="$TMUX_NAME" TMUX_TMPDIR="$TMP/tmux" \
    "$AGENTGATE" serve --listen 127.0.0.1:0 --data-dir "$TMP/data" 2>"$TMP/agentgate.log" &
GW_PID=$!
GW_PORT=""
for ((i = 0; i < 150; i++)); do
    kill -0 "$GW_PID" 2>/dev/null || die "agentgate exited during start-up:
$(tail -n 20 "$TMP/agentgate.log")"
    GW_PORT=$(sed -n 's/.*address=127\.0\.0\.1:\([0-9][0-9]*\).*/\1/p' "$TMP/agentgate.log" | head -n 1)
    [[ -n $GW_PORT ]] && break
    sleep 0.1
done
[[ -n $GW_PORT ]] || die "agentgate logged no 'address=127.0.0.1:PORT' line within 15 s"
wait_for_port "$GW_PORT" "$GW_PID" agentgate "$TMP/agentgate.log"
log "agentgate listening on 127.0.0.1:$GW_PORT (pid $GW_PID)"

SSH_OPTS=(-F /dev/null -i "$TMP/client_key"
    -o BatchMode=yes -o IdentitiesOnly=yes
    -o UserKnownHostsFile="$TMP/known_hosts" -o StrictHostKeyChecking=accept-new
    -o LogLevel=ERROR)
SCP_OPTS=(-q "${SSH_OPTS[@]}" -P "$GW_PORT")
MODES=(none bwrap)
declare -A AGENT=([none]=sb-none [bwrap]=sb-bwrap)
WORKSPACES="$TMP/agents/workspaces"

gw() { ssh "${SSH_OPTS[@]}" -p "$GW_PORT" 127.0.0.1 "$@" </dev/null; }
in_agent() { local a=$1; shift; ssh "${SSH_OPTS[@]}" -p "$GW_PORT" "$a@127.0.0.1" "$@"; }

log "warm-up: learning the host key, creating the agents"
gw list >/dev/null || die "ssh gw list failed (see agentgate.log)"
for m in "${MODES[@]}"; do
    out=$(gw create "${AGENT[$m]}" --sandbox "$m" -- sleep 100000 2>&1) \
        || die "ssh gw create ${AGENT[$m]} --sandbox $m failed: $out"
    want="sandbox bwrap"
    [[ $m == none ]] && want="no sandbox"
    [[ $out == *"$want"* ]] || die "create ${AGENT[$m]} --sandbox $m did not report '$want': $out"
done

# Where a session runs: its PID (1-3 in a fresh PID namespace), the processes it can see, its
# home, its working directory.
PROBE='echo "pid $$, $(ls /proc | grep -c "^[0-9]") processes visible, home $HOME, cwd $(pwd)"'
declare -A PROBE_OUT
for m in "${MODES[@]}"; do
    PROBE_OUT[$m]=$(in_agent "${AGENT[$m]}" "$PROBE" </dev/null) || die "the probe in ${AGENT[$m]} failed"
    PROBE_OUT[$m]=${PROBE_OUT[$m]//$TMP/\$TMP}
    log "${AGENT[$m]} session: ${PROBE_OUT[$m]}"
done
seen() { sed -n 's/.*, \([0-9]*\) processes visible.*/\1/p' <<<"$1"; }
(($(seen "${PROBE_OUT[bwrap]}") < $(seen "${PROBE_OUT[none]}"))) \
    || die "sb-bwrap's session sees as many processes as sb-none's: it does not run in a sandbox (${PROBE_OUT[bwrap]})"
[[ ${PROBE_OUT[bwrap]} == *"home \$TMP/gwhome,"* && ${PROBE_OUT[bwrap]} == *"cwd \$TMP/agents/workspaces/sb-bwrap" ]] \
    || die "sb-bwrap's session is not in its workspace with the private home at \$HOME: ${PROBE_OUT[bwrap]}"

# Small smoke transfers: exact byte counts both ways, scp round-trips into the workspace.
smoke=$((3 * 1024 * 1024 + 17))
head -c "$smoke" /dev/urandom >"$TMP/smoke.bin"
for m in "${MODES[@]}"; do
    a=${AGENT[$m]}
    n=$(head -c "$smoke" /dev/zero | in_agent "$a" 'wc -c') || die "smoke upload to $a failed"
    [[ $n -eq $smoke ]] || die "smoke upload to $a: the command read $n bytes, not $smoke"
    n=$(in_agent "$a" "head -c $smoke /dev/zero" </dev/null | wc -c) || die "smoke download from $a failed"
    [[ $n -eq $smoke ]] || die "smoke download from $a: got $n bytes, not $smoke"
    scp "${SCP_OPTS[@]}" "$TMP/smoke.bin" "$a@127.0.0.1:" </dev/null || die "smoke scp upload to $a failed"
    cmp -s "$TMP/smoke.bin" "$WORKSPACES/$a/smoke.bin" || die "smoke scp to $a did not land in its workspace"
    scp "${SCP_OPTS[@]}" "$a@127.0.0.1:smoke.bin" "$TMP/downloads/" </dev/null || die "smoke scp download from $a failed"
    cmp -s "$TMP/smoke.bin" "$TMP/downloads/smoke.bin" || die "smoke scp round trip through $a changed the file"
    rm -f "$TMP/downloads/smoke.bin" "$WORKSPACES/$a/smoke.bin"
done
rm -f "$TMP/smoke.bin"

# --- 3. hyperfine: sessions, create, destroy ------------------------------------------------------
q() { printf '%q ' "$@"; }
SSH_BASE=$(q ssh "${SSH_OPTS[@]}")
SSH_GW="${SSH_BASE}-p $GW_PORT 127.0.0.1"
TICK_Q=$(printf '%q' "$TMP/tick")
# The agent's command marks that it runs, in its workspace (its working directory in both modes).
AGENT_CMD="sh -c 'touch .up; exec sleep 100000'"
# Until agent $n's `.up` exists, polling every 2 ms, at most 10 s.
wait_up() { # prefix -> shell text
    printf 'exec 9<>%s; i=0; until [[ -e %q/%s-$n/.up ]]; do ((++i < 5000)) || { echo "%s-$n never ran its command" >&2; exit 1; }; read -t 0.002 -u 9 || :; done' \
        "$TICK_Q" "$WORKSPACES" "$1" "$1"
}
declare -A CMD_CREATE PREP_CREATE CMD_DESTROY PREP_DESTROY
for m in "${MODES[@]}"; do
    for kind in create destroy; do echo 0 >"$TMP/counter-$kind-$m"; done
    c=$(printf '%q' "$TMP/counter-create-$m")
    d=$(printf '%q' "$TMP/counter-destroy-$m")
    # Every run makes a fresh name from a counter file, with shell builtins only (hyperfine
    # subtracts the cost of its shell, not of extra processes).
    CMD_CREATE[$m]="read n <$c; n=\$((n+1)); echo \$n >$c; $SSH_GW \"create c$m-\$n --sandbox $m -- $AGENT_CMD\" >/dev/null && { $(wait_up "c$m"); }"
    PREP_CREATE[$m]="read n <$c; ((n == 0)) || $SSH_GW destroy c$m-\$n --force >/dev/null"
    PREP_DESTROY[$m]="read n <$d; n=\$((n+1)); echo \$n >$d; $SSH_GW \"create d$m-\$n --sandbox $m -- $AGENT_CMD\" >/dev/null && { $(wait_up "d$m"); }"
    CMD_DESTROY[$m]="read n <$d; $SSH_GW destroy d$m-\$n --force >/dev/null"
done

# One smoke run of each outside hyperfine, so a broken command fails with its own message.
for m in "${MODES[@]}"; do
    bash -c "${PREP_CREATE[$m]} && ${CMD_CREATE[$m]}" || die "the create command for --sandbox $m failed: ${CMD_CREATE[$m]}"
    bash -c "${PREP_DESTROY[$m]} && ${CMD_DESTROY[$m]}" || die "the destroy command for --sandbox $m failed: ${CMD_DESTROY[$m]}"
done

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
if python3 -c 'import os, sys; sys.exit(0 if os.getloadavg()[0] > os.cpu_count() else 1)'; then
    log "warning: load average $LOAD_BEFORE is above the CPU count ($(nproc)): other work on this machine will add noise"
fi
log "measuring sessions: hyperfine --warmup $WARMUP --runs $RUNS"
hyperfine --shell bash --warmup "$WARMUP" --runs "$RUNS" --style basic \
    --export-json "$TMP/hyperfine-session.json" \
    -n "session none 1" "${SSH_BASE}-p $GW_PORT sb-none@127.0.0.1 true" \
    -n "session bwrap 1" "${SSH_BASE}-p $GW_PORT sb-bwrap@127.0.0.1 true" \
    -n "session bwrap 2" "${SSH_BASE}-p $GW_PORT sb-bwrap@127.0.0.1 true" \
    -n "session none 2" "${SSH_BASE}-p $GW_PORT sb-none@127.0.0.1 true" \
    >&2 || die "hyperfine (sessions) failed (a command exited non-zero; see above)"
log "measuring create and destroy: hyperfine --warmup $WARMUP --runs $RUNS"
hyperfine --shell bash --warmup "$WARMUP" --runs "$RUNS" --style basic \
    --export-json "$TMP/hyperfine-lifecycle.json" \
    --prepare "${PREP_CREATE[none]}" -n "create none" "${CMD_CREATE[none]}" \
    --prepare "${PREP_CREATE[bwrap]}" -n "create bwrap" "${CMD_CREATE[bwrap]}" \
    --prepare "${PREP_DESTROY[none]}" -n "destroy none" "${CMD_DESTROY[none]}" \
    --prepare "${PREP_DESTROY[bwrap]}" -n "destroy bwrap" "${CMD_DESTROY[bwrap]}" \
    >&2 || die "hyperfine (create, destroy) failed (a command exited non-zero; see above)"
for m in "${MODES[@]}"; do
    bash -c "${PREP_CREATE[$m]}" || log "warning: the last agent of 'create $m' could not be destroyed"
done
leftover=$(gw list -q | sort | tr '\n' ' ')
[[ $leftover == "sb-bwrap sb-none " ]] || log "warning: unexpected agents after create/destroy: $leftover"

# --- 4. transfers ---------------------------------------------------------------------------------
TICKS=$(getconf CLK_TCK)
# CPU time the machine has spent busy (user, nice, system, irq, softirq, steal), in clock ticks.
machine_cpu() { awk '$1 == "cpu" { print $2 + $3 + $4 + $7 + $8 + $9 }' /proc/stat; }
BASE_CHILDREN=" $({ pgrep -P "$GW_PID" || true; } | tr '\n' ' ') "
wait_idle() { # until the gateway has reaped its session processes (at most 10 s)
    local i c busy
    for ((i = 0; i < 200; i++)); do
        busy=""
        for c in $(pgrep -P "$GW_PID" || true); do
            [[ $BASE_CHILDREN == *" $c "* ]] || busy=1
        done
        [[ -z $busy ]] && return 0
        sleep 0.05
    done
    log "warning: the gateway still has session processes 10 s after a transfer"
}
# See bench/throughput.sh: the first writer of a large file after a pause pays to fault memory
# back in on this kind of VM; writing and deleting SIZE bytes first, untimed, evens that out.
prefault() {
    head -c "$BYTES" /dev/zero >"$TMP/downloads/prefault.bin"
    rm -f "$TMP/downloads/prefault.bin"
}

op_exec_up() { head -c "$BYTES" /dev/zero | in_agent "$1" 'cat > /dev/null'; }
op_exec_down() { in_agent "$1" "head -c $BYTES /dev/zero" </dev/null >/dev/null; }
op_scp_up() { scp "${SCP_OPTS[@]}" "$PAYLOAD" "$1@127.0.0.1:" </dev/null; }
op_scp_down() { scp "${SCP_OPTS[@]}" "$1@127.0.0.1:payload.bin" "$TMP/downloads/$1.bin" </dev/null; }

RAW="$TMP/raw.tsv"
printf 'round\tmeasurement\tmode\tseconds\tmachine_cpu_s\tloadavg\n' >"$RAW"
measure() { # round measurement mode function
    local round=$1 m=$2 mode=$3 fn=$4 t0 t1 k0 k1 secs load
    wait_idle
    case $m in scp-*) prefault ;; esac
    load=$(cut -d' ' -f1 /proc/loadavg)
    k0=$(machine_cpu)
    t0=$EPOCHREALTIME
    "$fn" "${AGENT[$mode]}" || die "round $round, $m in ${AGENT[$mode]} failed (exit status $?)"
    t1=$EPOCHREALTIME
    wait_idle
    k1=$(machine_cpu)
    secs=$(python3 -c "print(f'{$t1 - $t0:.4f}')")
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$m" "$mode" "$secs" \
        "$(python3 -c "print(f'{($k1 - $k0) / $TICKS:.2f}')")" "$load" >>"$RAW"
    log "round $round/$ROUNDS  $(printf '%-10s %-6s' "$m" "$mode") $secs s  $(python3 -c "print(f'{$SIZE_MB / $secs:.0f}')") MiB/s"
}
check_size() { # file what
    local n
    n=$(stat -c %s "$1" 2>/dev/null || echo missing)
    [[ $n == "$BYTES" ]] || die "$2: $1 is $n bytes, not $BYTES"
}

log "measuring transfers: $ROUNDS rounds of $SIZE_MB MiB, sb-none first in odd rounds"
BENCH_START=$EPOCHREALTIME
for ((r = 1; r <= ROUNDS; r++)); do
    order=(none bwrap)
    ((r % 2)) || order=(bwrap none)
    for pair in exec-up:op_exec_up exec-down:op_exec_down scp-up:op_scp_up scp-down:op_scp_down; do
        m=${pair%%:*}
        for mode in "${order[@]}"; do
            measure "$r" "$m" "$mode" "${pair#*:}"
            a=${AGENT[$mode]}
            case $m in
                scp-up) check_size "$WORKSPACES/$a/payload.bin" "round $r, scp upload to $a" ;;
                scp-down)
                    check_size "$TMP/downloads/$a.bin" "round $r, scp download from $a"
                    ((r > 1)) || cmp -s "$PAYLOAD" "$TMP/downloads/$a.bin" || die "round 1: the file downloaded from $a differs from the payload"
                    rm -f "$TMP/downloads/$a.bin"
                    ;;
            esac
        done
    done
    rm -f "$WORKSPACES"/sb-*/payload.bin
done
export BENCH_ELAPSED
BENCH_ELAPSED=$(python3 -c "print(f'{$EPOCHREALTIME - $BENCH_START:.0f}')")

# --- 5. results -----------------------------------------------------------------------------------
mkdir -p "$RESULTS_DIR" "$(dirname "$PERF_MD")"
CPU_MODEL=$(sed -n 's/^model name[[:space:]]*:[[:space:]]*//p' /proc/cpuinfo | head -n 1)
[[ -n $CPU_MODEL ]] || CPU_MODEL=$(lscpu 2>/dev/null | sed -n 's/^Model name:[[:space:]]*//p' | head -n 1)
export BENCH_DATE BENCH_NPROC BENCH_CPU BENCH_KERNEL BENCH_OPENSSH BENCH_AGENTGATE BENCH_HYPERFINE BENCH_BWRAP \
    BENCH_COMMIT BENCH_OS BENCH_MEM BENCH_RUNS BENCH_WARMUP BENCH_ROUNDS BENCH_SIZE_MB BENCH_LOAD_BEFORE \
    BENCH_LOADAVG BENCH_TMPFS PROBE_NONE PROBE_BWRAP
BENCH_DATE=$(date -u +%Y-%m-%dT%H:%M:%SZ)
BENCH_NPROC=$(nproc)
BENCH_CPU=${CPU_MODEL:-unknown}
BENCH_KERNEL=$(uname -sr)
BENCH_OS=$(. /etc/os-release 2>/dev/null && echo "${PRETTY_NAME:-unknown}" || echo unknown)
BENCH_MEM=$(awk '/^MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo)
BENCH_OPENSSH=$(ssh -V 2>&1)
BENCH_AGENTGATE=$("$AGENTGATE" --version 2>&1 || echo unknown)
BENCH_HYPERFINE=$(hyperfine --version)
BENCH_BWRAP=$(bwrap --version 2>&1 || echo unknown)
BENCH_COMMIT=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)
if [[ -n $(git -C "$REPO" status --porcelain --untracked-files=no -- gateway hostctl Cargo.toml Cargo.lock 2>/dev/null) ]]; then
    BENCH_COMMIT="$BENCH_COMMIT (with uncommitted changes)"
fi
BENCH_RUNS=$RUNS
BENCH_WARMUP=$WARMUP
BENCH_ROUNDS=$ROUNDS
BENCH_SIZE_MB=$SIZE_MB
BENCH_LOAD_BEFORE=$LOAD_BEFORE
BENCH_LOADAVG=$(cut -d' ' -f1-3 /proc/loadavg)
BENCH_TMPFS="$BENCH_TMPDIR ($(df --output=fstype "$BENCH_TMPDIR" 2>/dev/null | tail -n 1 || stat -f -c %T "$BENCH_TMPDIR"))"
PROBE_NONE=${PROBE_OUT[none]}
PROBE_BWRAP=${PROBE_OUT[bwrap]}

python3 "$REPO/bench/sandbox_report.py" "$TMP/hyperfine-session.json" "$TMP/hyperfine-lifecycle.json" \
    "$RAW" "$RESULTS_JSON" "$PERF_MD"
log "wrote $RESULTS_JSON and updated $PERF_MD"
