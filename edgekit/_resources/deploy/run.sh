#!/bin/sh
# Start the model server of the release this file belongs to. systemd's ExecStart and the fallback
# supervisor both run <root>/current/run.sh, so switching `current` switches what a restart starts.
# POSIX sh only: devices without bash (BusyBox, minimal chroots) must run it.
set -eu
here=$(cd "$(dirname "$0")" && pwd -P)
root=$(cd "$here/../.." && pwd -P)
EDGEKIT_HOST=@HOST@
EDGEKIT_PORT=@PORT@
EDGEKIT_THREADS=@THREADS@
EDGEKIT_DEVICE=@DEVICE@
# Device-local settings (port, host, threads, device) written at deploy time override the bundle's defaults.
if [ -f "$root/service.env" ]; then . "$root/service.env"; fi
set -- "$here/venv/bin/python" -m edgekit.cli serve "$here/@MODEL@" --host "$EDGEKIT_HOST" --port "$EDGEKIT_PORT" \
    --device "$EDGEKIT_DEVICE"
if [ -n "$EDGEKIT_THREADS" ]; then set -- "$@" --threads "$EDGEKIT_THREADS"; fi
PYTHONUNBUFFERED=1
export PYTHONUNBUFFERED
exec "$@"
