#!/bin/sh
# The emulated Raspberry Pi (arm64 Debian under QEMU): build | start | stop | status.
# A thin wrapper so the device can be driven from the checkout without remembering the module path;
# the work is in edgekit/deploy/emulated.py (importable by the tests). Needs root.
set -eu
here=$(cd "$(dirname "$0")" && pwd -P)
py=${PYTHON:-python3}
if [ -x "$here/../../.venv/bin/python" ] && [ -z "${PYTHON:-}" ]; then py="$here/../../.venv/bin/python"; fi
exec "$py" -m edgekit.deploy.emulated "$@"
