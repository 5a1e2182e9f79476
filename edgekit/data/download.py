"""Checksum-verified downloads into the cache. Nothing half-downloaded is ever kept under its final name."""

from __future__ import annotations

import hashlib
import urllib.error
import urllib.request
from pathlib import Path

from ..errors import DataError
from ..fsutil import atomic_path


def file_digest(path: str | Path, algo: str = "sha256", chunk: int = 1 << 20) -> str:
    h = hashlib.new(algo)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def _matches(path: Path, checksum: str | None) -> bool:
    if checksum is None:
        return True
    algo, _, want = checksum.partition(":")
    return file_digest(path, algo) == want


def fetch(url: str, dest: str | Path, checksum: str | None = None, timeout: float = 60.0, quiet: bool = False) -> Path:
    """Download ``url`` to ``dest`` unless a file with the right checksum (``"md5:..."`` or
    ``"sha256:..."``, the digests the publishers list) is already there."""
    dest = Path(dest)
    if dest.exists() and _matches(dest, checksum):
        return dest
    try:
        with atomic_path(dest) as tmp:
            with urllib.request.urlopen(url, timeout=timeout) as r, open(tmp, "wb") as f:
                total = int(r.headers.get("Content-Length") or 0)
                bar = None
                if not quiet:
                    try:
                        from tqdm import tqdm

                        bar = tqdm(total=total or None, unit="B", unit_scale=True, desc=dest.name, leave=False)
                    except ImportError:
                        pass
                for block in iter(lambda: r.read(1 << 20), b""):
                    f.write(block)
                    if bar:
                        bar.update(len(block))
                if bar:
                    bar.close()
            if not _matches(tmp, checksum):
                algo = checksum.partition(":")[0]
                raise DataError(f"Checksum mismatch for {url}: expected {checksum}, got {algo}:{file_digest(tmp, algo)}")
    except (urllib.error.URLError, OSError, TimeoutError) as e:
        raise DataError(f"Can't download {url} to {dest}: {e}. Without network, pass a local copy (path=...)") from None
    return dest
