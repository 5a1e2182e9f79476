"""Raw app payloads (JPEG/PNG images, WAV clips) → one input row, using the artifact's preprocessing.

Image: ``{"type": "image", "size": [H, W], "channels": C, "mean": m, "scale": s, "layout": "NHWC"}``
gives ``(pixel - mean) * scale``. Audio: ``{"type": "audio", "sample_rate": .., "clip_samples": ..,
"frontend": {...}}`` goes through ``edgekit.features.Frontend``, the same code the model trained on.
"""

from __future__ import annotations

import io

import numpy as np

from ..errors import ModelError
from .errors import RequestError, TooLarge, Unavailable, UnsupportedMedia

MAX_PIXELS = 25_000_000  # default cap on decoded pixels (ServeConfig.max_image_mp)
# Each side, too: resizing a 1 x 20,000,000 PNG (20 MP, under the area cap, 38 KB on the wire) to 224 x 224
# took the server to 809 MB, because the resampler's weights grow with the source/target ratio.
MAX_SIDE = 16384
# Bytes per pixel as Pillow holds an image of each mode (multi-band modes are padded to 32 bits).
_MODE_BYTES = {"1": 1, "L": 1, "P": 1, "I;16": 2, "I;16L": 2, "I;16B": 2, "I;16N": 2}
LAYOUTS, COLORS = ("NHWC", "NCHW"), ("RGB", "BGR")


def sniff(body: bytes) -> str | None:
    if body[:3] == b"\xff\xd8\xff":
        return "image"
    if body[:8] == b"\x89PNG\r\n\x1a\n":
        return "image"
    if body[:4] == b"RIFF" and body[8:12] == b"WAVE":
        return "audio"
    return None


def to_input(model, body: bytes, max_pixels: int = MAX_PIXELS, with_size: bool = False):
    """One input row from a raw file. CPU-bound (decoding): the server calls it off the event loop. With
    ``with_size``: (row, (width, height) of the image as sent, or None for audio)."""
    pre = model.preprocessing
    kind = pre.get("type")
    if kind not in ("image", "audio"):
        raise RequestError(f"Model {model.name!r} has no image or audio preprocessing in its metadata, so it "
                           "can't classify raw files; send tensors to /v2/models/{name}/infer instead")
    got = sniff(body)
    if got is None:
        raise UnsupportedMedia("The body is not a JPEG, PNG or WAV file"
                               + (f"; model {model.name!r} takes {'an image' if kind == 'image' else 'a WAV clip'}"))
    if got != kind:
        raise UnsupportedMedia(f"Model {model.name!r} takes {'an image (JPEG/PNG)' if kind == 'image' else 'a WAV clip'}; "
                               f"received {'an image' if got == 'image' else 'a WAV clip'}")
    t = next(iter(model.input_info.values()))
    x, size = _image(body, pre, max_pixels) if kind == "image" else (_audio(body, pre), None)
    shape = [1 if d is None else d for d in t.shape]
    if x.size != int(np.prod(shape)):
        raise RequestError(f"Model {model.name!r}: its preprocessing gives {x.size} values but input {t.name!r} "
                           f"takes shape {list(t.shape)}; the metadata does not match the model")
    x = x.reshape(shape).astype(np.float32, copy=False)
    return (x, size) if with_size else x


def _image(body: bytes, pre: dict, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    try:
        from PIL import Image
    except ImportError:
        raise Unavailable("Classifying images needs pillow: pip install 'edgekit[serve]'") from None
    size = pre.get("size")
    channels = int(pre.get("channels", 3))
    try:
        with Image.open(io.BytesIO(body)) as im:  # reads the header only: the size is known before decoding
            w, h = im.size
            if w * h > max_pixels:
                raise TooLarge(f"The image is {w}x{h} = {w * h / 1e6:.1f} megapixels; the limit is "
                               f"{max_pixels / 1e6:g} (--max-image-mp). Resize it before sending")
            if w > MAX_SIDE or h > MAX_SIDE:
                raise TooLarge(f"The image is {w}x{h}; each side may be at most {MAX_SIDE} pixels. "
                               "Resize it before sending")
            decoded = w * h * _MODE_BYTES.get(im.mode, 4)
            if decoded > 4 * max_pixels:  # e.g. 32-bit float pixels
                raise TooLarge(f"The image is {w}x{h} in mode {im.mode}: {decoded / 1e6:.0f} MB decoded; the limit "
                               f"is {4 * max_pixels / 1e6:g} MB (4 bytes x --max-image-mp)")
            mode = "L" if channels == 1 else "RGB"
            if im.mode != mode:  # convert() copies even when the mode already matches: a second full image
                im = im.convert(mode)
            if size and im.size != (int(size[1]), int(size[0])):
                im = im.resize((int(size[1]), int(size[0])), Image.BILINEAR)
            a = np.asarray(im, np.float32)
    except Image.DecompressionBombError as e:  # pillow's own, far higher, limit
        raise TooLarge(f"The image is too large to decode: {e}") from None
    except (OSError, ValueError) as e:
        raise RequestError(f"Can't decode the image: {e}") from None
    if a.ndim == 2:
        a = a[..., None]
    if str(pre.get("color", "RGB")).upper() == "BGR" and a.shape[-1] == 3:
        a = a[..., ::-1]  # models trained on OpenCV frames (Caffe-era) take BGR
    mean = np.asarray(pre.get("mean", 0.0), np.float32)
    scale = np.asarray(pre.get("scale", 1.0), np.float32)
    a = (a - mean) * scale
    if str(pre.get("layout", "NHWC")).upper() == "NCHW":
        a = a.transpose(2, 0, 1)
    return a, (w, h)


def check_preprocessing(pre: dict, input_info: dict) -> None:
    """Refuse, when the model is loaded, metadata that would make every classify request fail (or eat memory):
    ModelError saying which key is wrong. ``input_info``: the model's inputs by name."""
    kind = pre.get("type")
    if kind not in ("image", "audio"):
        return  # no raw-file route for this model; /infer does not read the preprocessing
    if len(input_info) != 1:
        return  # classify refuses several-input models per request, with its own message
    t = next(iter(input_info.values()))
    static = all(d is not None for d in t.shape[1:])
    want = int(np.prod([d for d in t.shape[1:]])) if static else None

    def bad(key, why):
        raise ModelError(f"Its metadata's preprocessing {key} {why}; received {pre.get(key)!r}. Fix the sidecar "
                         "(.json next to the model) or delete it")

    def integer(key, low, high, default=None):
        v = pre.get(key, default)
        if type(v) is not int or not low <= v <= high:
            bad(key, f"must be an integer from {low} to {high:,}")
        return v

    if kind == "audio":
        integer("sample_rate", 1000, 384_000, 16000)
        if "clip_samples" in pre:
            integer("clip_samples", 1, 3600 * 384_000)
        try:
            from ..features import Frontend
        except ImportError:
            return  # the classify route says the front-end is missing, per request
        try:
            Frontend.from_preprocessing(pre)
        except Exception as e:  # noqa: BLE001 - what the front-end refuses, said once at load
            raise ModelError(f"Its metadata's audio preprocessing is unusable: {e}") from None
        return
    channels = integer("channels", 1, 3, 3)
    if channels == 2:
        bad("channels", "must be 1 or 3")
    size = pre.get("size")
    if size is not None and (not isinstance(size, (list, tuple)) or len(size) != 2
                             or any(type(d) is not int or not 1 <= d <= MAX_SIDE for d in size)):
        bad("size", f"must be [height, width], each an integer from 1 to {MAX_SIDE}")
    for key in ("mean", "scale"):
        v = pre.get(key, 0.0 if key == "mean" else 1.0)
        vals = v if isinstance(v, (list, tuple)) else [v]
        if (not vals or len(vals) not in (1, channels)
                or any(type(x) not in (int, float) or not np.isfinite(x) for x in vals)):
            bad(key, f"must be a finite number or a list of 1 or {channels} (one per channel)")
    if str(pre.get("layout", "NHWC")).upper() not in LAYOUTS:
        bad("layout", "must be " + " or ".join(LAYOUTS))
    if str(pre.get("color", "RGB")).upper() not in COLORS:
        bad("color", "must be " + " or ".join(COLORS))
    if size is not None and want is not None and size[0] * size[1] * channels != want:
        raise ModelError(f"Its metadata's preprocessing gives {size[0]}x{size[1]}x{channels} = "
                         f"{size[0] * size[1] * channels} values but input {t.name!r} takes {list(t.shape)}; "
                         "the metadata does not match the model")


def _read_wav(body: bytes, decode_pcm) -> tuple[np.ndarray, int]:
    """Mono float32 samples and the sample rate of a PCM WAV (8/16/32-bit)."""
    import wave

    try:
        with wave.open(io.BytesIO(body), "rb") as w:
            ch, width, sr, n = w.getnchannels(), w.getsampwidth(), w.getframerate(), w.getnframes()
            raw = w.readframes(n)
        return decode_pcm(raw, width, ch), sr
    except (wave.Error, EOFError, ValueError) as e:
        raise RequestError(f"Can't read the WAV file: {e} (send 8, 16 or 32-bit PCM)") from None


def _audio(body: bytes, pre: dict) -> np.ndarray:
    try:
        from ..features import Frontend, decode_pcm
    except ImportError:
        raise Unavailable("The audio front-end (edgekit.features) is not available in this install, "
                          "so WAV clips can't be classified here; send feature tensors to /infer") from None
    x, sr = _read_wav(body, decode_pcm)
    want = int(pre.get("sample_rate", 16000))
    if sr != want:
        raise RequestError(f"The WAV is {sr} Hz; this model expects {want} Hz mono (resample it first)")
    try:
        fe = Frontend.from_preprocessing(pre)
    except Exception as e:  # noqa: BLE001 - bad metadata is the model's problem, said plainly
        raise RequestError(f"The model's audio preprocessing metadata is unusable: {e}") from None
    n = int(pre.get("clip_samples", getattr(fe, "clip_samples", len(x))))
    # Centre-crop or zero-pad to the clip length the model was trained on.
    if len(x) >= n:
        s = (len(x) - n) // 2
        x = x[s:s + n]
    else:
        out = np.zeros(n, np.float32)
        s = (n - len(x)) // 2
        out[s:s + len(x)] = x
        x = out
    return np.asarray(fe(x), np.float32)


# How far from 1 the scores of a softmax output may sum. An int8 softmax output is quantized in steps of
# 1/256: the demo's 12-class int8 TFLite and ONNX models sum to 0.992-0.996, and a 1e-3 tolerance took them
# for logits and softmaxed them again, which flattened a 0.95 posterior to ~0.2 (every threshold then missed).
PROBABILITY_SUM_TOL = 0.1


def as_probabilities(rows: np.ndarray) -> tuple[np.ndarray, bool]:
    """Rows of scores as probabilities: the scores themselves when every row already is (each in [0, 1],
    summing to 1 within a quantized output's rounding; renormalized), else each row's softmax. The one rule of
    the server, the apps and the compress judges."""
    a = np.asarray(rows, np.float64).reshape(len(rows), -1)
    total = a.sum(1, keepdims=True)
    if a.size and a.min() >= -1e-6 and a.max() <= 1.0 + 1e-6 and np.all(np.abs(total - 1.0) <= PROBABILITY_SUM_TOL):
        return a / total, False
    e = np.exp(a - a.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True), True


def softmax_if_needed(scores: np.ndarray) -> tuple[np.ndarray, bool]:
    """One output's probabilities (:func:`as_probabilities`) and whether softmax was applied (told the client)."""
    p, applied = as_probabilities(np.asarray(scores).reshape(1, -1))
    return p[0], applied
