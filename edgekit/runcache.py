"""The recipe run cache: steps keyed by the content hash of their config and inputs.

Below both the recipe runner (``pipeline.py``) and the step wiring (``steps.py``): a step folder
``steps/NN-<kind>-<key>/`` holds the step's files and ``step.json``, written last, which marks it
done and records a hash of every file the step produced, so a cached step whose files were
changed or damaged since is run again instead of being reused.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from . import __version__
from .fsutil import write_json_atomic

def file_hash(path: Path) -> str:
    h = hashlib.sha256()
    p = Path(path)
    files = [p] if p.is_file() else sorted(x for x in p.rglob("*") if x.is_file())
    for f in files:
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def folder_hashes(folder: Path) -> dict[str, str]:
    """sha256 of every file a step left in its folder (step.json aside), by relative path."""
    return {str(f.relative_to(folder)): file_hash(f) for f in sorted(folder.rglob("*"))
            if f.is_file() and f.name != "step.json"}


def _read_marker(marker: Path) -> dict | None:
    try:
        done = json.loads(marker.read_text())
    except (OSError, ValueError):
        return None
    return done if isinstance(done, dict) and isinstance(done.get("outputs"), dict) else None


def _changed_files(folder: Path, recorded: dict | None) -> list[str]:
    """Files that differ from what step.json recorded (missing, altered or extra model files)."""
    if recorded is None:  # a step.json written before files were recorded: nothing to compare
        return []
    now = folder_hashes(folder)
    return sorted(k for k in set(recorded) | set(now) if recorded.get(k) != now.get(k))


def step_key(kind: str, config: Any, inputs: dict[str, str]) -> str:
    blob = json.dumps({"kind": kind, "config": config, "inputs": inputs, "edgekit": __version__},
                      sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


@dataclass
class StepRecord:
    index: int
    kind: str
    key: str
    folder: Path
    cached: bool = False
    seconds: float = 0.0
    outputs: dict = field(default_factory=dict)
    note: str = ""  # why a cached step ran again

    def row(self) -> dict:
        row = {"step": f"{self.index:02d}", "kind": self.kind, "key": self.key,
               "status": "cached" if self.cached else "ran", "seconds": round(self.seconds, 1)}
        return {**row, "note": self.note} if self.note else row


class Run:
    def __init__(self, recipe: Recipe, out: Path, quiet: bool = False, say: Callable[[str], None] | None = None):
        self.recipe = recipe
        self.out = Path(out)
        self.quiet = quiet
        self.say = say or (lambda s: None)
        self.records: list[StepRecord] = []

    def step(self, kind: str, config: Any, inputs: dict[str, str], fn: Callable[[Path], dict]) -> StepRecord:
        """Run ``fn(folder) -> outputs`` unless a finished step with the same key exists."""
        idx = len(self.records) + 1
        key = step_key(kind, config, inputs)
        folder = self.out / "steps" / f"{idx:02d}-{kind}-{key}"
        marker = folder / "step.json"
        note = ""
        if marker.exists():
            done = _read_marker(marker)
            changed = _changed_files(folder, done.get("files")) if done is not None else ["step.json"]
            if not changed:
                rec = StepRecord(idx, kind, key, folder, cached=True, outputs=done["outputs"])
                self.say(f"[{idx:02d}] {kind}: cached ({folder.name})")
                self.records.append(rec)
                return rec
            # Reusing a damaged artifact would carry it into every later step and every re-run.
            note = (f"cached files changed or damaged since the step ran ({', '.join(changed[:3])}"
                    f"{' ...' if len(changed) > 3 else ''}); ran it again")
            self.say(f"[{idx:02d}] {kind}: {note}")
            shutil.rmtree(folder)
        # Stale folders of this step index with another key belong to an older config.
        for old in (self.out / "steps").glob(f"{idx:02d}-{kind}-*"):
            if old != folder:
                shutil.rmtree(old, ignore_errors=True)
        folder.mkdir(parents=True, exist_ok=True)
        self.say(f"[{idx:02d}] {kind} ...")
        t0 = time.time()
        outputs = fn(folder)
        rec = StepRecord(idx, kind, key, folder, cached=False, seconds=time.time() - t0, outputs=outputs, note=note)
        write_json_atomic(marker, {"kind": kind, "key": key, "config": config, "inputs": inputs,
                                   "outputs": outputs, "seconds": rec.seconds, "finished": time.time(),
                                   "files": folder_hashes(folder)})
        self.say(f"[{idx:02d}] {kind}: done in {rec.seconds:.1f}s")
        self.records.append(rec)
        return rec


