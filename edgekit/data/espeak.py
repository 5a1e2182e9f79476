"""Speech synthesis with espeak-ng through the ``espeakng-loader`` wheel and ctypes.

espeak-ng is GPL-3 and process-global; it is only a data-generation dependency of the build
side (``edgekit[train]``), never part of the runtime.
"""

from __future__ import annotations

import ctypes
import threading
import zlib

import numpy as np

from ..errors import DataError, MissingDependencyError

_AUDIO_OUTPUT_SYNCHRONOUS = 2
_ESPEAK_RATE, _ESPEAK_PITCH, _ESPEAK_RANGE = 1, 3, 4
_ESPEAK_CHARS_AUTO = 0
_POS_CHARACTER = 1

_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)

_lock = threading.Lock()
_state: dict = {}


def _engine():
    if "lib" in _state:
        return _state["lib"], _state["rate"]
    try:
        import espeakng_loader
    except ImportError:
        raise MissingDependencyError("espeakng-loader", "train", "Synthesizing the 'keywords' dataset") from None
    lib = ctypes.CDLL(espeakng_loader.get_library_path())
    lib.espeak_Initialize.restype = ctypes.c_int
    lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
    lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
    lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
    lib.espeak_SetSynthCallback.argtypes = [_CALLBACK]
    if hasattr(lib, "espeak_ng_SetRandSeed"):
        lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
    lib.espeak_Synth.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
                                 ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
    rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, espeakng_loader.get_data_path().encode(), 0)
    if rate <= 0:
        raise DataError(f"espeak-ng failed to initialise (data at {espeakng_loader.get_data_path()})")
    chunks: list[np.ndarray] = []

    @_CALLBACK
    def on_audio(wav, n, _events):
        if n > 0:
            chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
        return 0

    lib.espeak_SetSynthCallback(on_audio)
    # The callback object must outlive the library's reference to it.
    _state.update(lib=lib, rate=rate, chunks=chunks, cb=on_audio)
    return lib, rate


def synthesize(text: str, voice: str = "en-us", rate: int = 175, pitch: int = 50, pitch_range: int = 50,
               sample_rate: int = 16000) -> np.ndarray:
    """Speak ``text`` and return float32 mono audio in [-1, 1] at ``sample_rate``.

    The same calls in a fresh process give the same audio: espeak-ng seeds the noise of breathy voices
    (``+f2``, ``+f3``, ``+f5``, ``+Alicia``, ``+victor``) from the clock at initialisation, so without a
    seed those clips changed from one process to the next (275 of the 3,685 built-in espeak keywords,
    measured); each request now seeds it from its own text, voice and parameters (libraries too old for
    ``espeak_ng_SetRandSeed`` keep the clock). Within a process some synthesizer state still carries
    from one call to the next, so a repeated call may differ slightly."""
    with _lock:
        lib, native = _engine()
        if lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise DataError(f"espeak-ng has no voice {voice!r}")
        lib.espeak_SetParameter(_ESPEAK_RATE, int(rate), 0)
        lib.espeak_SetParameter(_ESPEAK_PITCH, int(pitch), 0)
        lib.espeak_SetParameter(_ESPEAK_RANGE, int(pitch_range), 0)
        if hasattr(lib, "espeak_ng_SetRandSeed"):
            lib.espeak_ng_SetRandSeed(zlib.crc32(f"{text}|{voice}|{int(rate)}|{int(pitch)}|{int(pitch_range)}".encode()))
        chunks = _state["chunks"]
        chunks.clear()
        buf = ctypes.create_string_buffer(text.encode())
        lib.espeak_Synth(buf, len(buf), 0, _POS_CHARACTER, 0, _ESPEAK_CHARS_AUTO, None, None)
        lib.espeak_Synchronize()
        pcm = np.concatenate(chunks) if chunks else np.zeros(0, np.int16)
        chunks.clear()
    audio = pcm.astype(np.float32) / 32768.0
    from .audio import resample

    return resample(audio, native, sample_rate)
