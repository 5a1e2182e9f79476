"""Speech Commands v2 (Warden, 2018): downloaded with its checksum into the cache, or read from a local copy."""

from __future__ import annotations

import tarfile
from pathlib import Path

from ..errors import DataError
from .base import Dataset, cache_dir
from .download import fetch
from .folders import load_speech_commands_folder

URL = "https://storage.googleapis.com/download.tensorflow.org/data/speech_commands_v0.02.tar.gz"
CHECKSUM = "sha256:af14739ee7dc311471de98f5f9d2c9191b18aedfe957f4a6ff791c709868ff58"


def load_speech_commands(path: str | None = None, download: bool = True, keywords="default", **options) -> Dataset:
    """The 12-class task (10 keywords, ``_unknown_``, ``_silence_``) with the official split lists."""
    if path is None:
        root = cache_dir("speech-commands-v2")
        if not (root / "testing_list.txt").exists():
            if not download:
                raise DataError(f"Speech Commands v2 not in {root}; pass path= to an extracted copy")
            tgz = fetch(URL, cache_dir() / "speech_commands_v0.02.tar.gz", checksum=CHECKSUM)
            with tarfile.open(tgz) as t:
                t.extractall(root, filter="data")
    else:
        root = Path(path)
    ds = load_speech_commands_folder(root, keywords=keywords, **options)
    ds.name = "speech-commands"
    return ds
