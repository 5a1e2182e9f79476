"""The emulated Raspberry Pi: arm64 Debian under QEMU, its own sshd on 127.0.0.1 (edgekit.deploy.emulated).

The root is debootstrapped once and cached under $EDGEKIT_CACHE/emulated (tests/conftest.py points
EDGEKIT_CACHE at the checkout's .cache/edgekit); each session unpacks it fresh, so every run starts
from a clean device. The finalizer kills everything running in the root and unmounts /proc even when
a test fails.
"""

from __future__ import annotations

import sys

import pytest


@pytest.fixture(scope="session")
def pi():
    from edgekit.deploy.emulated import EmulatedPi, Unavailable, cached_root, check_host

    try:
        check_host(need_debootstrap=cached_root() is None)
    except Unavailable as e:
        # pytest -ra prints this reason in the summary: CI output says why the round trip did not run.
        pytest.skip(f"emulated Raspberry Pi unavailable: {e}")
    device = EmulatedPi()
    try:
        device.start(build_log=lambda s: print(f"[emulated] {s}", file=sys.stderr))
        yield device
    finally:
        device.stop()
        print(f"[emulated] device timings (s): {device.timings}", file=sys.stderr)
