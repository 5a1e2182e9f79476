"""The audio front-end: log-mel and MFCC features in NumPy only.

The same code makes training features on the host and runs on the device, so the network
sees identical inputs in both places and can be fully int8. Never imports TensorFlow or Keras.

    fe = Frontend(kind="mfcc", num_mfcc=10)          # 1 s at 16 kHz -> (49, 10)
    feats = fe(audio)                                 # batch: whole clip at once
    s = fe.stream(); s.push(chunk) -> new frames      # streaming: frame by frame, same numbers
    meta.preprocessing = fe.preprocessing()           # {"type": "audio", "sample_rate": ..., "frontend": {...}}
    Frontend.from_preprocessing(meta.preprocessing)   # back on the device

Definitions follow ``tf.signal`` (periodic Hann window, ``stft`` without end padding, HTK mel
filters as in ``linear_to_mel_weight_matrix``, MFCC = ``mfccs_from_log_mel_spectrograms``), which the
tests use as the reference.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import numpy as np

__all__ = ["Frontend", "StreamingFrontend", "mel_matrix", "hann_window", "mfcc_from_log_mel", "decode_pcm"]

_MEL_BREAK_HZ = 700.0
_MEL_HIGH_Q = 1127.0


def decode_pcm(raw: bytes, sample_width: int, channels: int = 1) -> np.ndarray:
    """Interleaved little-endian PCM (8-bit unsigned, 16 or 32-bit signed) -> float32 mono in [-1, 1]."""
    if sample_width == 2:
        x = np.frombuffer(raw, "<i2").astype(np.float32) / 32768.0
    elif sample_width == 1:
        x = (np.frombuffer(raw, np.uint8).astype(np.float32) - 128.0) / 128.0
    elif sample_width == 4:
        x = np.frombuffer(raw, "<i4").astype(np.float32) / 2147483648.0
    else:
        raise ValueError(f"unsupported PCM sample width {8 * sample_width} bits (use 8, 16 or 32-bit PCM)")
    if channels > 1:
        x = x[: len(x) // channels * channels].reshape(-1, channels).mean(axis=1)
    return x


def hz_to_mel(hz):
    return _MEL_HIGH_Q * np.log1p(np.asarray(hz, np.float64) / _MEL_BREAK_HZ)


def hann_window(length: int) -> np.ndarray:
    """Periodic Hann window (``tf.signal.hann_window(periodic=True)``)."""
    n = np.arange(length, dtype=np.float64)
    return (0.5 - 0.5 * np.cos(2 * np.pi * n / length)).astype(np.float32)


def mel_matrix(num_mel_bins: int, num_spectrogram_bins: int, sample_rate: int,
               lower_hz: float, upper_hz: float) -> np.ndarray:
    """``[num_spectrogram_bins, num_mel_bins]`` triangular HTK-mel weights; the DC bin gets no weight."""
    nyquist = sample_rate / 2.0
    linear_hz = np.linspace(0.0, nyquist, num_spectrogram_bins)[1:]
    spec_mel = hz_to_mel(linear_hz)[:, None]
    edges = np.linspace(hz_to_mel(lower_hz), hz_to_mel(upper_hz), num_mel_bins + 2)
    lower, center, upper = edges[:-2], edges[1:-1], edges[2:]
    lower_slopes = (spec_mel - lower) / (center - lower)
    upper_slopes = (upper - spec_mel) / (upper - center)
    w = np.maximum(0.0, np.minimum(lower_slopes, upper_slopes))
    return np.pad(w, [[1, 0], [0, 0]]).astype(np.float32)


def _dct2_matrix(n_in: int, n_out: int) -> np.ndarray:
    # tf.signal.dct(type=2) is unnormalized (factor 2); mfccs_from_log_mel_spectrograms scales by 1/sqrt(2N).
    n = np.arange(n_in)[:, None]
    k = np.arange(n_out)[None, :]
    return (2.0 * np.cos(np.pi * k * (2 * n + 1) / (2 * n_in)) / np.sqrt(2.0 * n_in)).astype(np.float32)


def mfcc_from_log_mel(log_mel: np.ndarray, num_mfcc: int) -> np.ndarray:
    """MFCCs as ``tf.signal.mfccs_from_log_mel_spectrograms(log_mel)[..., :num_mfcc]``."""
    return log_mel @ _dct2_matrix(log_mel.shape[-1], num_mfcc)


@dataclass
class Frontend:
    """Log-mel (``kind="logmel"``) or MFCC (``kind="mfcc"``) features of mono float audio.

    Defaults are the "Hello Edge" KWS setup: 16 kHz, 30 ms windows every 20 ms, 40 mel bands
    (20–4000 Hz) on the magnitude spectrum, 10 MFCCs: one second gives 49 x 10.
    """

    kind: str = "mfcc"
    sample_rate: int = 16000
    frame_length: int = 480
    frame_step: int = 320
    fft_length: int = 512
    num_mel_bins: int = 40
    lower_hz: float = 20.0
    upper_hz: float = 4000.0
    power: float = 1.0
    log_offset: float = 1e-6
    num_mfcc: int = 10
    clip_samples: int = 16000

    def __post_init__(self):
        from ..errors import ConfigError

        if self.kind not in ("mfcc", "logmel"):
            raise ConfigError(f"Unknown front-end kind {self.kind!r}. Available: logmel, mfcc")
        if self.fft_length < self.frame_length:
            raise ConfigError(f"fft_length ({self.fft_length}) must be >= frame_length ({self.frame_length})")
        if not 0 <= self.lower_hz < self.upper_hz <= self.sample_rate / 2:
            raise ConfigError(f"Need 0 <= lower_hz < upper_hz <= sample_rate/2; received "
                              f"{self.lower_hz}, {self.upper_hz} at {self.sample_rate} Hz")
        if self.kind == "mfcc" and not 0 < self.num_mfcc <= self.num_mel_bins:
            raise ConfigError(f"num_mfcc must be in 1..num_mel_bins ({self.num_mel_bins}); received {self.num_mfcc}")
        self._window = hann_window(self.frame_length)
        self._mel = mel_matrix(self.num_mel_bins, self.fft_length // 2 + 1, self.sample_rate,
                               self.lower_hz, self.upper_hz)
        self._dct = _dct2_matrix(self.num_mel_bins, self.num_mfcc) if self.kind == "mfcc" else None

    # -- shapes and metadata -----------------------------------------------------------------
    @property
    def num_features(self) -> int:
        return self.num_mfcc if self.kind == "mfcc" else self.num_mel_bins

    def num_frames(self, num_samples: int | None = None) -> int:
        n = self.clip_samples if num_samples is None else num_samples
        return 0 if n < self.frame_length else 1 + (n - self.frame_length) // self.frame_step

    @property
    def output_shape(self) -> tuple[int, int]:
        """Features of one clip: (frames, coefficients)."""
        return (self.num_frames(), self.num_features)

    def to_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, d: dict) -> "Frontend":
        from ..errors import ConfigError

        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"Unknown front-end parameter(s) {', '.join(unknown)}. Allowed: {', '.join(sorted(known))}")
        return cls(**d)

    def preprocessing(self) -> dict:
        """The ``ArtifactMeta.preprocessing`` entry that lets a device rebuild this front-end."""
        return {"type": "audio", "sample_rate": self.sample_rate, "clip_samples": self.clip_samples,
                "layout": "frames,features", "frontend": self.to_dict()}

    @classmethod
    def from_preprocessing(cls, pre: dict) -> "Frontend":
        from ..errors import ConfigError

        if pre.get("type") != "audio" or "frontend" not in pre:
            raise ConfigError(f"Not an audio preprocessing entry (need type 'audio' and 'frontend'): {pre!r}")
        return cls.from_dict(pre["frontend"])

    # -- computation -------------------------------------------------------------------------
    def frames_to_features(self, frames: np.ndarray) -> np.ndarray:
        """``[..., n, frame_length]`` samples -> ``[..., n, num_features]``."""
        spec = np.abs(np.fft.rfft(frames * self._window, n=self.fft_length, axis=-1)).astype(np.float32)
        if self.power != 1.0:
            spec = spec ** self.power
        feats = np.log(spec @ self._mel + self.log_offset)
        if self._dct is not None:
            feats = feats @ self._dct
        return feats.astype(np.float32)

    def frame(self, audio: np.ndarray) -> np.ndarray:
        audio = np.asarray(audio, np.float32)
        n = self.num_frames(audio.shape[-1])
        idx = np.arange(self.frame_length)[None, :] + self.frame_step * np.arange(n)[:, None]
        return audio[..., idx]

    def __call__(self, audio: np.ndarray) -> np.ndarray:
        """Features of one clip ``[samples]`` or a batch ``[batch, samples]``."""
        return self.frames_to_features(self.frame(audio))

    def batch(self, audio: np.ndarray, chunk: int = 512) -> np.ndarray:
        """Features of many clips, in chunks to bound memory."""
        out = [self(audio[i:i + chunk]) for i in range(0, len(audio), chunk)]
        return np.concatenate(out) if out else np.zeros((0,) + self.output_shape, np.float32)

    def stream(self) -> "StreamingFrontend":
        return StreamingFrontend(self)


class StreamingFrontend:
    """Feed audio in chunks of any size; get each feature frame as soon as its window is complete.

    The frames equal the batch front-end's on the concatenated audio. ``window()`` returns the
    latest ``frames`` rows for a sliding-window classifier.
    """

    def __init__(self, frontend: Frontend, history: int | None = None):
        self.fe = frontend
        self._buf = np.zeros(0, np.float32)
        self.history = history or frontend.num_frames()
        self._frames = np.zeros((0, frontend.num_features), np.float32)

    def push(self, chunk: np.ndarray) -> np.ndarray:
        """Add samples; return the new feature rows (possibly none)."""
        self._buf = np.concatenate([self._buf, np.asarray(chunk, np.float32).reshape(-1)])
        n = self.fe.num_frames(self._buf.shape[0])
        if n == 0:
            return np.zeros((0, self.fe.num_features), np.float32)
        new = self.fe.frames_to_features(self.fe.frame(self._buf[: (n - 1) * self.fe.frame_step + self.fe.frame_length]))
        self._buf = self._buf[n * self.fe.frame_step:]
        self._frames = np.concatenate([self._frames, new])[-self.history:]
        return new

    def window(self) -> np.ndarray | None:
        """The last ``history`` frames once that many exist, else None."""
        return self._frames.copy() if self._frames.shape[0] >= self.history else None

    def reset(self) -> None:
        self._buf = np.zeros(0, np.float32)
        self._frames = np.zeros((0, self.fe.num_features), np.float32)
