#!/bin/sh
# Fallback supervisor for devices without systemd (chroots, containers, plain sshd homes):
# a background loop that keeps <root>/current/run.sh alive, with pid files and a restart count.
#   supervise.sh start|stop|restart|status
# POSIX sh + kill/sleep only.
set -u
here=$(cd "$(dirname "$0")" && pwd -P)
root=$(cd "$here/../.." && pwd -P)
rundir="$root/run"
logdir="$root/log"
pidfile="$rundir/supervisor.pid"
childfile="$rundir/server.pid"
countfile="$rundir/restarts"
mkdir -p "$rundir" "$logdir"

alive() { [ -f "$1" ] && kill -0 "$(cat "$1" 2>/dev/null)" 2>/dev/null; }

loop() {
    child=""
    trap 'if [ -n "$child" ]; then kill -TERM "$child" 2>/dev/null; wait "$child" 2>/dev/null; fi; rm -f "$pidfile" "$childfile"; exit 0' TERM INT HUP
    n=0
    delay=1
    while :; do
        started=$(date +%s)
        "$root/current/run.sh" >>"$logdir/serve.log" 2>&1 &
        child=$!
        echo "$child" > "$childfile"
        wait "$child"
        rc=$?
        rm -f "$childfile"
        n=$((n + 1))
        echo "$n" > "$countfile"
        echo "supervise: server exited with status $rc; restart $n in ${delay}s" >>"$logdir/serve.log"
        # A server that ran a while before dying gets a fresh back-off; a crash loop backs off to 30 s.
        if [ $(( $(date +%s) - started )) -gt 60 ]; then delay=1; fi
        sleep "$delay"
        delay=$((delay * 2)); [ "$delay" -gt 30 ] && delay=30
    done
}

start() {
    if alive "$pidfile"; then echo "supervise: already running (pid $(cat "$pidfile"))"; return 0; fi
    # Reset before returning, so a health check right after start never sees the last loop's count.
    echo 0 > "$countfile"
    # Detach from the SSH session: no inherited stdin/stdout/stderr, immune to the hang-up.
    nohup /bin/sh "$here/supervise.sh" loop </dev/null >>"$logdir/supervise.log" 2>&1 &
    echo $! > "$pidfile"
    echo "supervise: started (pid $!)"
}

stop() {
    if alive "$pidfile"; then
        pid=$(cat "$pidfile")
        kill -TERM "$pid" 2>/dev/null
        i=0
        while kill -0 "$pid" 2>/dev/null && [ "$i" -lt 50 ]; do sleep 0.2; i=$((i + 1)); done
        kill -KILL "$pid" 2>/dev/null
    fi
    # A server left over from a killed loop must not keep the port.
    if alive "$childfile"; then kill -TERM "$(cat "$childfile")" 2>/dev/null; sleep 1; kill -KILL "$(cat "$childfile")" 2>/dev/null; fi
    rm -f "$pidfile" "$childfile"
    echo "supervise: stopped"
}

case "${1:-status}" in
    loop) loop ;;
    start) start ;;
    stop) stop ;;
    restart) stop; start ;;
    status) if alive "$pidfile"; then echo "active"; else echo "inactive"; exit 3; fi ;;
    *) echo "usage: supervise.sh start|stop|restart|status" >&2; exit 2 ;;
esac
