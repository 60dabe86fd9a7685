#!/usr/bin/env bash
# Throughput of `ssh -R` into an agent, and signatures through the operator's agent forwarded
# with `ssh -A`, against a plain OpenSSH sshd doing the same, on one machine, over loopback,
# side by side in one run.
#
#   bench/remote-forward.sh                        # needs root, sshd, tmux, cargo, python3
#   ROUNDS=5 SIZE_MB=1024 SIGNS=300 bench/remote-forward.sh  # the defaults
#   PROFILE=debug bench/remote-forward.sh          # target/debug as built, no release build
#
# What it does:
#   1. cargo build --release --workspace (unless PROFILE=debug); a temp dir; a client key.
#   2. A private OpenSSH sshd on 127.0.0.1 (its own host key and sshd_config, run as root,
#      AllowTcpForwarding yes, GatewayPorts no): the baseline. agentgate serve on 127.0.0.1 with
#      an empty data dir and its own tmux server, and an agent `bench` on `local`.
#   3. A target on the client's side (127.0.0.1, python3): "sink" reads until EOF and answers
#      with the count; "source" sends SIZE bytes and closes.
#   4. ROUNDS rounds; in each, for each server (agentgate first in odd rounds, OpenSSH in even
#      ones): `ssh -N -R 0:127.0.0.1:TARGET` (the allocated port read from ssh's stderr), then
#        up     a connection to the listener on the agent's host sends SIZE bytes to the sink
#               and waits for its count (the agent's side to yours)
#        down   a connection to the listener reads SIZE bytes from the source (yours to the
#               agent's side)
#      timed from the connect to the last byte, by the process on the agent's host (for
#      `local` that is this machine, as for the baseline sshd).
#   5. A markdown table on stdout (median MiB/s of each, and agentgate / OpenSSH).
#   6. An ssh-agent holding the client key, the operator allowed to forward it (`operator set
#      --agent-forwarding on`); ROUNDS rounds, in each, for each server in the same alternating
#      order: `ssh -A DEST python3 -` runs a client of the agent protocol on the agent's host
#      (inside the agent's sandbox for agentgate) that lists the keys, then asks for SIGNS
#      signatures, each on a connection of its own to SSH_AUTH_SOCK (as each `git push` makes
#      one): signatures per second over the whole loop, and the median time of one. A second
#      table on stdout.
#   7. On exit: stop sshd and agentgate, kill the bench tmux server, remove the temp dir.
set -euo pipefail

ROUNDS=${ROUNDS:-5}
SIZE_MB=${SIZE_MB:-1024}
SIGNS=${SIGNS:-300}
PROFILE=${PROFILE:-release}

die() { printf 'remote-forward: error: %s\n' "$*" >&2; exit 1; }
log() { printf 'remote-forward: %s\n' "$*" >&2; }

[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || die "ROUNDS must be a positive integer (got '$ROUNDS')"
[[ $SIZE_MB =~ ^[1-9][0-9]*$ ]] || die "SIZE_MB must be a positive integer (got '$SIZE_MB')"
[[ $SIGNS =~ ^[1-9][0-9]*$ ]] || die "SIGNS must be a positive integer (got '$SIGNS')"
[[ $PROFILE == release || $PROFILE == debug ]] || die "PROFILE must be release or debug (got '$PROFILE')"
BYTES=$((SIZE_MB * 1024 * 1024))
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=bench/lib.sh
source "$REPO/bench/lib.sh"

[[ $(id -u) -eq 0 ]] || die "run as root (the baseline sshd runs as root and needs /run/sshd)"
SSHD=$(command -v sshd || true)
[[ -n $SSHD ]] || { [[ -x /usr/sbin/sshd ]] && SSHD=/usr/sbin/sshd; }
[[ -n $SSHD ]] || die "sshd not found: apt-get install -y openssh-server"
for tool in ssh ssh-keygen ssh-agent ssh-add tmux python3; do
    command -v "$tool" >/dev/null || die "$tool not found (apt-get install -y openssh-client tmux python3)"
done

TMP="" SSHD_PID="" GW_PID="" TARGET_PID="" AGENT_PID="" CREATED_RUN_SSHD=""
TMUX_NAME="agentgate-rfbench-$$"
cleanup() { bench_cleanup $? "$TARGET_PID:target" "$AGENT_PID:ssh-agent" "$GW_PID:agentgate" "$SSHD_PID:sshd"; }
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- 1. binaries, temp dir, key -------------------------------------------------------------------
if [[ $PROFILE == release ]]; then
    log "building release binaries"
    (cd "$REPO" && cargo build --release --workspace --quiet) || die "cargo build --release failed"
fi
AGENTGATE="$REPO/target/$PROFILE/agentgate"
[[ -x $AGENTGATE && -x $REPO/target/$PROFILE/hostctl ]] || die "target/$PROFILE/{agentgate,hostctl} missing: build them first"
TMP=$(mktemp -d /tmp/agentgate-rfbench.XXXXXX)
mkdir -p "$TMP/gwhome/.ssh" "$TMP/agents" "$TMP/tmux" "$TMP/data"
chmod 700 "$TMP/tmux"
ssh-keygen -q -t ed25519 -N '' -C agentgate-bench -f "$TMP/client_key"
cp "$TMP/client_key.pub" "$TMP/gwhome/.ssh/id_ed25519.pub"

# --- 2. the baseline sshd and agentgate -----------------------------------------------------------
[[ -d /run/sshd ]] || { mkdir -p -m 0755 /run/sshd; CREATED_RUN_SSHD=1; }
ssh-keygen -q -t ed25519 -N '' -f "$TMP/sshd_host_ed25519_key"
cp "$TMP/client_key.pub" "$TMP/authorized_keys"
SSHD_PORT=$(free_port)
cat >"$TMP/sshd_config" <<EOF
ListenAddress 127.0.0.1:$SSHD_PORT
HostKey $TMP/sshd_host_ed25519_key
AuthorizedKeysFile $TMP/authorized_keys
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
PermitRootLogin prohibit-password
PidFile $TMP/sshd.pid
AllowTcpForwarding yes
GatewayPorts no
EOF
"$SSHD" -D -e -f "$TMP/sshd_config" 2>"$TMP/sshd.log" &
SSHD_PID=$!
wait_for_port "$SSHD_PORT" "$SSHD_PID" sshd

: >"$TMP/agentgate.log"
HOME="$TMP/gwhome" AGENTGATE_HOME="$TMP/agents" AGENTGATE_TMUX_SOCKET="$TMUX_NAME" TMUX_TMPDIR="$TMP/tmux" \
    "$AGENTGATE" serve --listen 127.0.0.1:0 --data-dir "$TMP/data" 2>"$TMP/agentgate.log" &
GW_PID=$!
GW_PORT=""
for ((i = 0; i < 150; i++)); do
    kill -0 "$GW_PID" 2>/dev/null || die "agentgate exited during start-up"
    GW_PORT=$(sed -n 's/.*address=127\.0\.0\.1:\([0-9][0-9]*\).*/\1/p' "$TMP/agentgate.log" | head -n 1)
    [[ -n $GW_PORT ]] && break
    sleep 0.1
done
[[ -n $GW_PORT ]] || die "agentgate logged no listening address"
wait_for_port "$GW_PORT" "$GW_PID" agentgate

SSH_OPTS=(-F /dev/null -i "$TMP/client_key" -o BatchMode=yes -o IdentitiesOnly=yes
    -o UserKnownHostsFile="$TMP/known_hosts" -o StrictHostKeyChecking=accept-new)
declare -A PORT=([gw]=$GW_PORT [openssh]=$SSHD_PORT)
declare -A DEST=([gw]=bench@127.0.0.1 [openssh]=127.0.0.1)
ssh "${SSH_OPTS[@]}" -p "$SSHD_PORT" 127.0.0.1 true </dev/null || die "ssh to the baseline sshd failed"
ssh "${SSH_OPTS[@]}" -p "$GW_PORT" 127.0.0.1 create bench -- sleep 100000 </dev/null >/dev/null 2>&1 \
    || die "ssh gw create bench failed (see agentgate.log)"

# --- 3. the client's-side targets -----------------------------------------------------------------
SINK_PORT=$(free_port)
SOURCE_PORT=$(free_port)
python3 - "$SINK_PORT" "$SOURCE_PORT" "$BYTES" <<'EOF' &
import socket, sys, threading
sink_port, source_port, size = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
chunk = b"\0" * (1 << 20)
def sink(c):
    n = 0
    while True:
        b = c.recv(1 << 20)
        if not b: break
        n += len(b)
    c.sendall(str(n).encode()); c.close()
def source(c):
    left = size
    try:
        while left:
            n = c.send(chunk[:min(left, len(chunk))]); left -= n
    except OSError:
        pass  # the reader went away; its count says so
    c.close()
def serve(port, handle):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", port)); s.listen(16)
    while True:
        c, _ = s.accept()
        threading.Thread(target=handle, args=(c,), daemon=True).start()
threading.Thread(target=serve, args=(sink_port, sink), daemon=True).start()
serve(source_port, source)
EOF
TARGET_PID=$!
wait_for_port "$SINK_PORT" "$TARGET_PID" "the sink"
wait_for_port "$SOURCE_PORT" "$TARGET_PID" "the source"

# One measurement: ssh -R to TARGET_PORT, then DIRECTION through the allocated port; prints
# MiB/s.
measure() { # server direction
    local server=$1 direction=$2 target err port i rate
    target=$SINK_PORT
    [[ $direction == down ]] && target=$SOURCE_PORT
    err="$TMP/ssh-$server-$direction.err"
    : >"$err"
    ssh "${SSH_OPTS[@]}" -o ExitOnForwardFailure=yes -N -p "${PORT[$server]}" \
        -R "0:127.0.0.1:$target" "${DEST[$server]}" </dev/null 2>"$err" &
    local ssh_pid=$!
    port=""
    for ((i = 0; i < 100; i++)); do
        port=$(sed -n 's/^Allocated port \([0-9]*\) .*/\1/p' "$err" | head -n 1)
        [[ -n $port ]] && break
        kill -0 "$ssh_pid" 2>/dev/null || die "ssh -R to $server ended: $(cat "$err")"
        sleep 0.1
    done
    [[ -n $port ]] || die "ssh -R to $server reported no port: $(cat "$err")"
    rate=$(python3 - "$port" "$BYTES" "$direction" <<'EOF'
import socket, sys, time
port, size, direction = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
start = time.monotonic()
s = socket.create_connection(("127.0.0.1", port))
if direction == "up":
    chunk = b"\0" * (1 << 20); left = size
    while left:
        n = s.send(chunk[:min(left, len(chunk))]); left -= n
    s.shutdown(socket.SHUT_WR)
    got = int(s.recv(64) or b"0")
else:
    got = 0
    while True:
        b = s.recv(1 << 20)
        if not b: break
        got += len(b)
elapsed = time.monotonic() - start
if got != size:
    sys.exit(f"carried {got} bytes, not {size}")
print(f"{size / elapsed / (1 << 20):.1f}")
EOF
    ) || die "the $direction transfer through $server's -R failed"
    stop_pid "$ssh_pid" ssh
    echo "$rate"
}

declare -A RATES
for ((round = 1; round <= ROUNDS; round++)); do
    order=(gw openssh)
    ((round % 2 == 0)) && order=(openssh gw)
    for server in "${order[@]}"; do
        for direction in up down; do
            rate=$(measure "$server" "$direction")
            RATES[$server.$direction]+="$rate "
            log "round $round: $server $direction $rate MiB/s"
        done
    done
done

median() { tr ' ' '\n' | grep -v '^$' | sort -n | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
printf '\n| %s MiB through `ssh -R`, %s rounds, %s build | agentgate (MiB/s) | OpenSSH sshd (MiB/s) | agentgate / OpenSSH |\n' "$SIZE_MB" "$ROUNDS" "$PROFILE"
printf '|---|---:|---:|---:|\n'
for direction in up down; do
    gw=$(median <<<"${RATES[gw.$direction]}")
    os=$(median <<<"${RATES[openssh.$direction]}")
    what="agent's host to the client (up)"
    [[ $direction == down ]] && what="client to the agent's host (down)"
    printf '| %s | %s | %s | %s |\n' "$what" "$gw" "$os" "$(awk -v a="$gw" -v b="$os" 'BEGIN { printf "%.2f", a / b }')"
done

# --- 6. signatures through a forwarded agent --------------------------------------------------------
ssh-agent -D -a "$TMP/agent.sock" >/dev/null 2>&1 &
AGENT_PID=$!
for ((i = 0; i < 50; i++)); do [[ -S $TMP/agent.sock ]] && break; sleep 0.1; done
SSH_AUTH_SOCK="$TMP/agent.sock" ssh-add -q "$TMP/client_key" || die "ssh-add failed"
OPERATOR=$(ssh "${SSH_OPTS[@]}" -p "$GW_PORT" 127.0.0.1 whoami --json </dev/null \
    | python3 -c 'import json, sys; print(json.load(sys.stdin)["operator"])') || die "whoami failed"
ssh "${SSH_OPTS[@]}" -p "$GW_PORT" 127.0.0.1 operator set "$OPERATOR" --agent-forwarding on \
    </dev/null >/dev/null || die "operator set --agent-forwarding on failed"

# One measurement: SIGNS signatures through SERVER's forwarded agent; prints "PER_SECOND MEDIAN_MS".
measure_agent() { # server
    local server=$1
    SSH_AUTH_SOCK="$TMP/agent.sock" ssh "${SSH_OPTS[@]}" -A -p "${PORT[$server]}" "${DEST[$server]}" \
        python3 - "$SIGNS" <<'EOF' || die "signing through $server's forwarded agent failed"
import os, socket, struct, sys, time
n, path = int(sys.argv[1]), os.environ.get("SSH_AUTH_SOCK")
if not path:
    sys.exit("no SSH_AUTH_SOCK: agent forwarding was refused")
def string(b): return struct.pack(">I", len(b)) + b
def ask(message):
    s = socket.socket(socket.AF_UNIX); s.connect(path)
    s.sendall(string(message))
    def read(k):
        got = b""
        while len(got) < k:
            b = s.recv(k - len(got))
            if not b: sys.exit("the agent closed the connection")
            got += b
        return got
    reply = read(struct.unpack(">I", read(4))[0]); s.close()
    return reply
keys = ask(bytes([11]))  # SSH_AGENTC_REQUEST_IDENTITIES
if keys[0] != 12 or struct.unpack(">I", keys[1:5])[0] < 1:
    sys.exit("the forwarded agent holds no key")
blob = keys[9:9 + struct.unpack(">I", keys[5:9])[0]]
times, start = [], time.monotonic()
for i in range(n):
    t = time.monotonic()
    reply = ask(bytes([13]) + string(blob) + string(b"agentgate bench %d" % i) + struct.pack(">I", 0))
    if reply[0] != 14:  # SSH_AGENT_SIGN_RESPONSE
        sys.exit(f"signature {i} refused")
    times.append(time.monotonic() - t)
total = time.monotonic() - start
times.sort()
print(f"{n / total:.1f} {times[len(times) // 2] * 1000:.2f}")
EOF
}

declare -A SIGN_RATES SIGN_TIMES
for ((round = 1; round <= ROUNDS; round++)); do
    order=(gw openssh)
    ((round % 2 == 0)) && order=(openssh gw)
    for server in "${order[@]}"; do
        read -r rate ms < <(measure_agent "$server")
        [[ -n $rate ]] || die "no figure from $server's forwarded agent"
        SIGN_RATES[$server]+="$rate "
        SIGN_TIMES[$server]+="$ms "
        log "round $round: $server $rate signatures/s, median $ms ms"
    done
done
gw_rate=$(median <<<"${SIGN_RATES[gw]}")
os_rate=$(median <<<"${SIGN_RATES[openssh]}")
gw_ms=$(median <<<"${SIGN_TIMES[gw]}")
os_ms=$(median <<<"${SIGN_TIMES[openssh]}")
printf '\n| %s signatures through `ssh -A`, %s rounds, %s build | agentgate | OpenSSH sshd | agentgate / OpenSSH |\n' "$SIGNS" "$ROUNDS" "$PROFILE"
printf '|---|---:|---:|---:|\n'
printf '| signatures per second | %s | %s | %s |\n' "$gw_rate" "$os_rate" "$(awk -v a="$gw_rate" -v b="$os_rate" 'BEGIN { printf "%.2f", a / b }')"
printf '| one signature, median ms | %s | %s | %s |\n' "$gw_ms" "$os_ms" "$(awk -v a="$gw_ms" -v b="$os_ms" 'BEGIN { printf "%.2f", a / b }')"
