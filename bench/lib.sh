# Shared by the benchmark scripts (sourced after each defines its own `log`).

# stop_pid PID [NAME]: SIGTERM, up to 15 s for it to end, then SIGKILL (said with NAME), and
# reaped. Nothing when PID is empty or already gone.
stop_pid() {
    local pid=$1 name=${2:-process} i
    [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 150; i++)); do
        kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
        sleep 0.1
    done
    log "$name (pid $pid) did not stop after SIGTERM; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

# free_port: a TCP port free on 127.0.0.1 now.
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# wait_for_port PORT PID NAME [LOG]: returns once 127.0.0.1:PORT accepts a connection; dies
# (with LOG's last lines, if given) when process PID ends first, or after 15 s.
wait_for_port() {
    local port=$1 pid=$2 name=$3 logf=${4:-} i
    for ((i = 0; i < 150; i++)); do
        if ! kill -0 "$pid" 2>/dev/null; then
            [[ -n $logf ]] && die "$name exited during start-up (see $logf):
$(tail -n 20 "$logf" 2>/dev/null)"
            die "$name exited during start-up"
        fi
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    die "$name did not accept connections on 127.0.0.1:$port within 15 s"
}

# bench_cleanup RC [PID:NAME]...: the end of a benchmark script (its EXIT trap): stops each
# process, ends the benchmark's tmux server ($TMUX_NAME, under $TMP/tmux: the agents live
# there, not in the gateway), shows the last lines of $TMP's sshd.log and agentgate.log when RC
# is not 0, removes $TMP and the /run/sshd this run made ($CREATED_RUN_SSHD), and exits RC.
bench_cleanup() {
    local rc=$1 each f
    shift
    set +e
    for each in "$@"; do
        stop_pid "${each%%:*}" "${each#*:}"
    done
    if [[ -n ${TMP:-} ]]; then
        TMUX_TMPDIR="$TMP/tmux" tmux -L "$TMUX_NAME" kill-server 2>/dev/null
        if ((rc != 0)); then
            for f in sshd.log agentgate.log; do
                [[ -s $TMP/$f ]] && { log "last lines of $f:"; tail -n 20 "$TMP/$f" >&2; }
            done
        fi
        rm -rf "$TMP"
    fi
    [[ -n ${CREATED_RUN_SSHD:-} ]] && rmdir /run/sshd 2>/dev/null
    exit "$rc"
}
