"""Camera classification demo: frames -> the model's own preprocessing -> Session -> top-k + FPS.

    src = open_source("0")                 # a camera index, a video file, an image folder, or "picamera"
    demo = CameraDemo(load("mobilenet.tflite"), top_k=3)
    summary = demo.run(src, on_result=print, save="annotated.mp4")

Frames come from OpenCV ``VideoCapture`` (camera index, video file or stream URL), ``picamera2``
on a Raspberry Pi, or a folder of images. Preprocessing is read from the artifact's metadata
(``{"type": "image", "size": [H, W], "channels": C, "mean", "scale", "layout", "color"}``) so the
device feeds the network exactly what it was trained on. Device side: OpenCV and NumPy only.
"""

from __future__ import annotations

import os
import sys
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ConfigError, DataError, MissingDependencyError, ModelError, UnsupportedError
from . import model_kind, model_labels, probabilities, top_k

__all__ = ["open_source", "FrameSource", "ImagePreprocessor", "CameraDemo", "FrameResult", "display_available"]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm")


def _cv2():
    try:
        import cv2
    except ImportError:
        raise MissingDependencyError("opencv-python-headless", "demo", "The camera demo") from None
    # OpenCV logs its own warnings for a missing camera; edgekit says it once, clearly.
    try:
        from cv2.utils import logging as cv_logging

        cv_logging.setLogLevel(cv_logging.LOG_LEVEL_ERROR)
    except (ImportError, AttributeError):  # pragma: no cover - builds without the logging utils
        pass
    return cv2


# -- frame sources -------------------------------------------------------------------------------
class FrameSource:
    """Iterate to get BGR uint8 frames. ``fps``: the source's nominal rate (None when unknown)."""

    name: str = ""
    fps: float | None = None

    def __iter__(self):
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class VideoSource(FrameSource):
    def __init__(self, target, name: str, is_camera: bool):
        cv2 = _cv2()
        self.name, self.is_camera = name, is_camera
        self.cap = cv2.VideoCapture(target)
        if not self.cap.isOpened():
            self.cap.release()
            if is_camera:
                raise UnsupportedError(f"No camera at index {target} (OpenCV could not open it). "
                                       "Pass a video file or an image folder with --source")
            raise DataError(f"Can't read video {name}: OpenCV could not open it (not a video, or a codec it lacks)")
        fps = self.cap.get(cv2.CAP_PROP_FPS)
        self.fps = float(fps) if fps and fps > 0 else None
        # A file can open and still hold no decodable frame: find out now, not after the loop starts.
        ok, self._first = self.cap.read()
        if not ok or self._first is None:
            self.cap.release()
            kind = f"camera {target}" if is_camera else f"video {name}"
            raise DataError(f"Can't read a frame from {kind}")

    def __iter__(self):
        frame, self._first = self._first, None
        while frame is not None:
            yield frame
            ok, frame = self.cap.read()
            if not ok:
                break

    def close(self) -> None:
        self.cap.release()


class FolderSource(FrameSource):
    """The images of a folder in name order (or one image file)."""

    def __init__(self, folder: Path):
        self.name = str(folder)
        self.files = [folder] if folder.is_file() else sorted(
            p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not self.files:
            raise DataError(f"Folder {folder} holds no images ({', '.join(IMAGE_SUFFIXES)})")

    def __iter__(self):
        cv2 = _cv2()
        for p in self.files:
            img = cv2.imread(str(p), cv2.IMREAD_COLOR)
            if img is None:
                raise DataError(f"Can't read image {p}")
            yield img


class PiCameraSource(FrameSource):
    """The Raspberry Pi camera through picamera2 (libcamera), which OpenCV can't open on current Pi OS."""

    def __init__(self, size=(640, 480)):
        from picamera2 import Picamera2

        self.name = "picamera2"
        try:
            self.cam = Picamera2()
            self.cam.configure(self.cam.create_video_configuration(main={"size": size, "format": "RGB888"}))
            self.cam.start()
        except (RuntimeError, IndexError) as e:
            raise UnsupportedError(f"No Raspberry Pi camera available through picamera2: {e}") from None

    def __iter__(self):
        while True:
            # picamera2's "RGB888" is stored B, G, R in memory: already OpenCV's BGR order.
            yield self.cam.capture_array()

    def close(self) -> None:
        self.cam.stop()


def _on_raspberry_pi() -> bool:
    try:
        return "raspberry pi" in Path("/proc/device-tree/model").read_text(errors="ignore").lower()
    except OSError:
        return False


def _picamera2_present() -> bool:
    import importlib.util

    return importlib.util.find_spec("picamera2") is not None


def open_source(source: str | int | os.PathLike = 0) -> FrameSource:
    """A camera index (``0``), ``picamera``, a video file or stream URL, or a folder of images."""
    s = str(source)
    if s == "picamera" or (s.isdigit() and _on_raspberry_pi() and _picamera2_present()):
        if not _picamera2_present():
            raise MissingDependencyError("picamera2", None, "The Raspberry Pi camera source")
        return PiCameraSource()
    if s.isdigit():
        return VideoSource(int(s), f"camera {s}", is_camera=True)
    if "://" in s:
        return VideoSource(s, s, is_camera=False)
    p = Path(s)
    if p.is_dir():
        return FolderSource(p)
    if not p.exists():
        raise DataError(f"No such video file or image folder: {p}. --source takes a camera index (0), "
                        "'picamera', a video file, a stream URL or a folder of images")
    if p.suffix.lower() in IMAGE_SUFFIXES:
        return FolderSource(p)
    return VideoSource(str(p), str(p), is_camera=False)


# -- preprocessing ---------------------------------------------------------------------------------
class ImagePreprocessor:
    """BGR frame -> the model's input tensor, from the artifact's image preprocessing metadata."""

    def __init__(self, pre: dict, input_shape, model_name: str = "the model"):
        self.size = pre.get("size")
        self.channels = int(pre.get("channels", 3))
        self.layout = str(pre.get("layout", "NHWC")).upper()
        self.color = str(pre.get("color", "RGB")).upper()
        if self.layout not in ("NHWC", "NCHW"):
            raise ModelError(f"{model_name}: image layout {self.layout!r} is not supported. Allowed: NHWC, NCHW")
        if self.channels not in (1, 3):
            raise ModelError(f"{model_name}: {self.channels} image channels; the camera demo gives 1 (gray) or 3")
        if self.color not in ("RGB", "BGR"):
            raise ModelError(f"{model_name}: colour order {self.color!r} is not supported. Allowed: RGB, BGR")
        shape = [d for d in input_shape]
        if len(shape) != 4:
            raise ModelError(f"{model_name} takes input {shape}; an image model takes 4-D [N, H, W, C] or [N, C, H, W]")
        h, w = (shape[1], shape[2]) if self.layout == "NHWC" else (shape[2], shape[3])
        if self.size is None:
            if h is None or w is None:
                raise ModelError(f"{model_name}: no image size in its metadata and a dynamic input {shape}")
            self.size = [h, w]
        self.size = [int(self.size[0]), int(self.size[1])]
        if (h is not None and h != self.size[0]) or (w is not None and w != self.size[1]):
            raise ModelError(f"{model_name}: metadata says {self.size[0]}x{self.size[1]} images but the input is {shape}")
        self.mean = np.asarray(pre.get("mean", 0.0), np.float32)
        self.scale = np.asarray(pre.get("scale", 1.0), np.float32)

    def __call__(self, bgr: np.ndarray) -> np.ndarray:
        cv2 = _cv2()
        h, w = self.size
        if bgr.shape[0] != h or bgr.shape[1] != w:
            # INTER_AREA when shrinking is anti-aliased (close to the PIL resize the server uses).
            interp = cv2.INTER_AREA if bgr.shape[0] > h else cv2.INTER_LINEAR
            bgr = cv2.resize(bgr, (w, h), interpolation=interp)
        if self.channels == 1:
            img = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)[..., None]
        elif self.color == "RGB":
            img = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        else:
            img = bgr
        x = (img.astype(np.float32) - self.mean) * self.scale
        if self.layout == "NCHW":
            x = x.transpose(2, 0, 1)
        return x[None]


# -- the demo ------------------------------------------------------------------------------------
@dataclass
class FrameResult:
    frame: int
    top: list  # [{"label", "index", "score"}]
    latency_ms: float  # preprocessing + inference (or the round trip to the server)
    fps: float  # frames per second over the last second or so, end to end
    boxes: list | None = None  # detectors: [{"label", "class", "score", "box": [x0, y0, x1, y1] in frame pixels}]
    counts: dict | None = None  # detectors: objects per label in this frame

    def to_dict(self) -> dict:
        d = {"frame": self.frame, "top": self.top, "latency_ms": round(self.latency_ms, 3), "fps": round(self.fps, 2)}
        if self.boxes is not None:
            d.update(boxes=self.boxes, counts=self.counts)
        return d


def display_available() -> bool:
    """A window can be shown: a display server is set and this OpenCV build has a GUI backend."""
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return False
    cv2 = _cv2()
    try:
        cv2.namedWindow("edgekit-probe", cv2.WINDOW_AUTOSIZE)
        cv2.destroyWindow("edgekit-probe")
        return True
    except cv2.error:  # opencv-python-headless has no highgui
        return False


class CameraDemo:
    """Classify frames with a local Session or a RemoteModel; draw, show, save, report."""

    def __init__(self, model, top_k: int = 3):
        if top_k < 1:
            raise ConfigError(f"top_k must be >= 1; received {top_k}")
        self.model, self.k = model, top_k
        kind = model_kind(model)
        self.name = getattr(model, "name", None) or Path(getattr(model, "path", "model")).name
        if kind != "image":
            what = {"audio": "audio (an audio front-end in its metadata)", "none": "no declared input kind (no preprocessing metadata)"}
            raise ModelError(f"Model {self.name} takes {what.get(kind, repr(kind))}; the camera demo needs an image "
                             "classifier with image preprocessing metadata (size, channels, mean, scale)")
        self.remote = hasattr(model, "classify_image")
        meta = getattr(model, "meta", None)
        self.detector = getattr(meta, "task", None) == "detection"
        if self.detector:
            if self.remote:
                raise UnsupportedError(f"Model {self.name} is a detector; the camera demo runs detectors from a local "
                                       "model file (--model), not over --url")
            from ..runtime.boxes import Postprocess

            self.post = Postprocess.from_meta(meta)
        if not self.remote:
            if len(model.inputs) != 1:
                raise ModelError(f"Model {self.name} has {len(model.inputs)} inputs; the camera demo needs one")
            self.pre = ImagePreprocessor(model.meta.preprocessing, model.inputs[0].shape, self.name)

    def classify(self, bgr: np.ndarray) -> np.ndarray:
        if self.remote:
            return self.model.classify_image(bgr)
        return probabilities(self.model.predict(self.pre(bgr)))

    def detect(self, bgr: np.ndarray) -> list:
        """Boxes in frame pixels through the device-side post-processing (edgekit.runtime.boxes)."""
        dets = self.post(self.model.predict(self.pre(bgr)))[0]
        return dets.to_list(model_labels(self.model, self.post.num_classes), (bgr.shape[1], bgr.shape[0]))

    def annotate(self, bgr: np.ndarray, result: FrameResult) -> np.ndarray:
        """Top-k labels with scores (classifiers) or boxes and per-class counts (detectors), and the FPS, drawn on
        (a copy of) the frame."""
        cv2 = _cv2()
        img = bgr.copy()
        scale = max(0.4, min(img.shape[0], img.shape[1]) / 480.0)
        lines = [f"{t['label']}: {t['score']:.2f}" for t in result.top] + [
            f"{result.fps:.1f} FPS  {result.latency_ms:.1f} ms"]
        if result.boxes is not None:
            for b in result.boxes:
                colour = _COLOURS[b["class"] % len(_COLOURS)]
                x0, y0, x1, y1 = (int(round(v)) for v in b["box"])
                if x0 == x1 and y0 == y1:  # a centroid model: a dot
                    cv2.circle(img, (x0, y0), max(3, int(6 * scale)), colour, -1, cv2.LINE_AA)
                else:
                    cv2.rectangle(img, (x0, y0), (x1, y1), colour, max(1, int(2 * scale)))
                cv2.putText(img, f"{b['label']} {b['score']:.2f}", (x0, max(10, y0 - 3)), cv2.FONT_HERSHEY_SIMPLEX,
                            0.45 * scale, colour, 1, cv2.LINE_AA)
            lines = [f"{k}: {v}" for k, v in result.counts.items()] + lines[-1:]
        lh = int(22 * scale) + 2
        box_w = int(max(cv2.getTextSize(s, cv2.FONT_HERSHEY_SIMPLEX, 0.55 * scale, 1)[0][0] for s in lines)) + 12
        cv2.rectangle(img, (0, 0), (min(box_w, img.shape[1] - 1), lh * len(lines) + 6), (0, 0, 0), -1)
        for i, s in enumerate(lines):
            color = (0, 255, 0) if i == 0 else ((0, 200, 255) if i == len(lines) - 1 else (255, 255, 255))
            cv2.putText(img, s, (6, lh * (i + 1)), cv2.FONT_HERSHEY_SIMPLEX, 0.55 * scale, color, 1, cv2.LINE_AA)
        return img

    def run(self, source: FrameSource, *, show: bool = False, save: str | os.PathLike | None = None,
            max_frames: int | None = None, on_result=None) -> dict:
        """Classify every frame of ``source``; returns a summary (frames, FPS, latency percentiles)."""
        cv2 = _cv2()
        writer = None
        recent: deque = deque(maxlen=30)
        latencies = []
        frames = 0
        t_start = time.perf_counter()
        try:
            for frame in source:
                if max_frames is not None and frames >= max_frames:
                    break
                t0 = time.perf_counter()
                if self.detector:
                    boxes = self.detect(frame)
                else:
                    probs = self.classify(frame)
                latencies.append((time.perf_counter() - t0) * 1000)
                recent.append(time.perf_counter())
                fps = (len(recent) - 1) / (recent[-1] - recent[0]) if len(recent) > 1 and recent[-1] > recent[0] else 0.0
                if self.detector:
                    counts: dict = {}
                    for b in boxes:
                        counts[b["label"]] = counts.get(b["label"], 0) + 1
                    res = FrameResult(frames, [], latencies[-1], fps, boxes, counts)
                else:
                    res = FrameResult(frames, top_k(probs, model_labels(self.model, probs.shape[-1]), self.k),
                                      latencies[-1], fps)
                frames += 1
                if show or save:
                    img = self.annotate(frame, res)
                    if save:
                        if writer is None:
                            writer = _writer(cv2, save, img.shape, source.fps)
                        writer.write(img)
                    if show:
                        cv2.imshow("edgekit demo camera", img)
                        if cv2.waitKey(1) & 0xFF in (ord("q"), 27):
                            break
                if on_result is not None:
                    on_result(res)
        except KeyboardInterrupt:
            pass
        finally:
            if writer is not None:
                writer.release()
            if show:
                cv2.destroyAllWindows()
        wall = time.perf_counter() - t_start
        lat = np.asarray(latencies) if latencies else np.zeros(1)
        return {"source": source.name, "model": self.name, "backend": getattr(self.model, "backend", ""),
                "frames": frames, "seconds": round(wall, 3), "fps": round(frames / wall, 2) if wall > 0 else 0.0,
                "latency_ms_mean": round(float(lat.mean()), 3), "latency_ms_p50": round(float(np.percentile(lat, 50)), 3),
                "latency_ms_p95": round(float(np.percentile(lat, 95)), 3), "saved": str(save) if save else None}


_COLOURS = [(0, 255, 0), (0, 200, 255), (255, 128, 0), (255, 0, 255), (0, 0, 255), (255, 255, 0)]


def _writer(cv2, path, shape, fps):
    path = Path(path)
    fourcc = {".avi": "MJPG", ".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".mkv": "mp4v"}.get(path.suffix.lower())
    if fourcc is None:
        raise ConfigError(f"--save {path}: unknown video type {path.suffix!r}. Allowed: .mp4, .avi, .mov, .mkv, .m4v")
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), float(fps or 30.0), (shape[1], shape[0]))
    if not w.isOpened():
        raise DataError(f"Can't write video {path} (OpenCV could not open a {fourcc} writer there)")
    return w
