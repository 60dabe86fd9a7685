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
