"""Fleets: one inventory file, many devices, in parallel with a concurrency limit.

``inventory.yaml``::

    concurrency: 4            # optional; --concurrency wins when given
    defaults:                 # optional; any per-host key
      user: pi
      key: ~/.ssh/id_ed25519
    hosts:
      - pi@10.0.0.11                      # a bare address
      - host: pi@10.0.0.12                # or a mapping with per-host settings
        name: kitchen
        port: 2222
        serve_port: 8081

Per-host keys win over ``defaults``, which win over command-line flags, which win over the profile.
One bad host never stops the others: each gets a row in the summary, failed ones say which step
failed and why.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import fields, replace
from pathlib import Path
from typing import Awaitable, Callable

from ..devices import yaml_problem
from ..errors import ConfigError, EdgekitError
from .deploy import DeployOptions, check_options, handled_cancel
from .ssh import Interrupted, StepFailed, Target

TARGET_KEYS = ("host", "name", "user", "port", "key", "known_hosts", "host_key_check", "connect_timeout")
OPTION_KEYS = tuple(f.name for f in fields(DeployOptions))


def load_inventory(path: str | Path, target_defaults: dict | None = None,
                   opts: DeployOptions | None = None) -> tuple[list[tuple[Target, DeployOptions]], int | None]:
    """Parse an inventory into (Target, DeployOptions) pairs and its concurrency (None if unset)."""
    import yaml

    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"No such inventory file: {p}")
    try:
        doc = yaml.safe_load(p.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"Inventory {p} is not valid YAML: {yaml_problem(e)}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"Inventory {p} is not UTF-8 text") from None
    if isinstance(doc, list):
        doc = {"hosts": doc}
    if not isinstance(doc, dict) or not doc.get("hosts") or not isinstance(doc["hosts"], list):
        raise ConfigError(f"Inventory {p} needs a 'hosts' list (addresses like pi@10.0.0.11, or mappings "
                          "with a 'host' key)")
    unknown = sorted(set(doc) - {"hosts", "defaults", "concurrency"})
    if unknown:
        raise ConfigError(f"Inventory {p}: unknown key(s) {', '.join(unknown)}. Allowed: hosts, defaults, concurrency")
    defaults = doc.get("defaults") or {}
    if not isinstance(defaults, dict):
        raise ConfigError(f"Inventory {p}: defaults must be a mapping; received {defaults!r}")
    concurrency = doc.get("concurrency")
    if concurrency is not None and (not isinstance(concurrency, int) or concurrency < 1):
        raise ConfigError(f"Inventory {p}: concurrency must be a positive integer; received {concurrency!r}")
    base_opts = opts or DeployOptions()
    items = []
    labels = set()
    for i, entry in enumerate(doc["hosts"]):
        if isinstance(entry, str):
            entry = {"host": entry}
        if not isinstance(entry, dict) or not entry.get("host"):
            raise ConfigError(f"Inventory {p}: hosts[{i}] must be an address or a mapping with 'host'; "
                              f"received {entry!r}")
        merged = {**defaults, **entry}
        bad = sorted(set(merged) - set(TARGET_KEYS) - set(OPTION_KEYS))
        if bad:
            raise ConfigError(f"Inventory {p}: hosts[{i}] has unknown key(s) {', '.join(bad)}. "
                              f"Allowed: {', '.join(TARGET_KEYS + OPTION_KEYS)}")
        tkw = {**(target_defaults or {}), **{k: merged[k] for k in TARGET_KEYS if k in merged and k != "host"}}
        target = Target.parse(str(merged["host"]), **tkw)
        if target.label in labels:
            raise ConfigError(f"Inventory {p}: {target.label} is listed twice")
        labels.add(target.label)
        okw = {k: merged[k] for k in OPTION_KEYS if k in merged}
        if "pip_args" in okw and isinstance(okw["pip_args"], str):
            okw["pip_args"] = okw["pip_args"].split()
        item_opts = replace(base_opts, **okw)
        try:
            check_options(item_opts)
        except ConfigError as e:
            raise ConfigError(f"Inventory {p}: hosts[{i}]: {e}") from None
        items.append((target, item_opts))
    return items, concurrency


async def run_fleet(items: list[tuple[Target, DeployOptions]],
                    fn: Callable[[Target, DeployOptions], Awaitable[dict]], concurrency: int = 4) -> list[dict]:
    """Run ``fn`` for every device, at most ``concurrency`` at a time; failures become rows, in input order."""
    if concurrency < 1:
        raise ConfigError(f"--concurrency must be at least 1; received {concurrency}")
    sem = asyncio.Semaphore(concurrency)

    async def one(target: Target, opts: DeployOptions) -> dict:
        t0 = time.perf_counter()
        try:
            async with sem:
                t0 = time.perf_counter()
                return await fn(target, opts)
        except asyncio.CancelledError:  # Ctrl-C before this device's turn, or in a read-only command
            handled_cancel()
            return _not_started(target)
        except Interrupted as e:
            return {"host": target.label, "status": "interrupted", "step": e.step,
                    "error": str(e).split("failed: ", 1)[-1], "seconds": round(time.perf_counter() - t0, 2)}
        except StepFailed as e:
            return {"host": target.label, "status": "failed", "step": e.step,
                    "error": str(e).split("failed: ", 1)[-1], "seconds": round(time.perf_counter() - t0, 2)}
        except EdgekitError as e:
            return {"host": target.label, "status": "failed", "step": "-", "error": str(e),
                    "seconds": round(time.perf_counter() - t0, 2)}
        except Exception as e:  # a bug or odd device must not take the rest of the fleet down
            return {"host": target.label, "status": "failed", "step": "-",
                    "error": f"{type(e).__name__}: {e}", "seconds": round(time.perf_counter() - t0, 2)}

    tasks = [asyncio.ensure_future(one(t, o)) for t, o in items]
    try:
        await asyncio.wait(tasks)
    except asyncio.CancelledError:
        # Ctrl-C: every device stops where it safely can (a switch under way runs to its end) and
        # says so in its row; the rows come back instead of a bare "Aborted".
        handled_cancel()
        for t in tasks:
            t.cancel()
        await asyncio.wait(tasks)
    return [_not_started(target) if t.cancelled() else t.result() for t, (target, _) in zip(tasks, items)]


def _not_started(target: Target) -> dict:
    return {"host": target.label, "status": "interrupted", "step": "-", "seconds": 0.0,
            "error": "interrupted (Ctrl-C); nothing was changed on this device"}


def summary_rows(rows: list[dict]) -> list[dict]:
    out = []
    for r in rows:
        out.append({"host": r["host"], "status": r["status"], "release": r.get("release"),
                    "step": r.get("step") or "-", "seconds": r.get("seconds"), "p50_ms": r.get("p50_ms"),
                    "detail": (r.get("error") or "").splitlines()[0][:140] if r.get("error") else ""})
    return out
