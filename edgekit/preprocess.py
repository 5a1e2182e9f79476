"""Image preprocessing of models edgekit did not train: parse ``--preprocess``, infer what the input
shape tells, and turn pixels into the model's input tensor the way the metadata says.

The metadata entry is the one the server and the camera demo already read::

    {"type": "image", "size": [H, W], "channels": 3, "layout": "NCHW", "color": "RGB",
     "mean": [123.675, 116.28, 103.53], "scale": [0.01712, 0.01751, 0.01743]}

``input = (pixel - mean) * scale`` on 0-255 pixels in ``color`` order, then transposed to ``layout``.
``--preprocess`` takes ``key=value`` pairs separated by commas; per-channel values by ``/``::

    size=224,layout=NCHW,mean=123.675/116.28/103.53,std=58.395/57.12/57.375
    imagenet,size=224               (torchvision's mean/std)
    scale=0.003921568,layout=NHWC   (pixels / 255)

Device-side safe: NumPy only (pillow to read image files).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .errors import ConfigError, DataError, ModelError, allowed

LAYOUTS = ("NCHW", "NHWC")
COLORS = ("RGB", "BGR")
KEYS = ("size", "layout", "mean", "std", "scale", "color", "channels")
MAX_SIZE = 4096  # pixels a side: a float32 RGB image of 4096x4096 is already 200 MB
PRESETS = {
    # torchvision / timm ImageNet normalization, on 0-255 pixels.
    "imagenet": {"mean": [123.675, 116.28, 103.53], "std": [58.395, 57.12, 57.375]},
    # Keras applications' "tf" mode: pixels to [-1, 1].
    "inception": {"mean": [127.5, 127.5, 127.5], "std": [127.5, 127.5, 127.5]},
    "unit": {"mean": [0.0], "std": [255.0]},  # pixels / 255
}


def _floats(key: str, v: str) -> list[float]:
    try:
        out = [float(x) for x in v.split("/") if x.strip()]
    except ValueError:
        raise ConfigError(f"--preprocess {key} must be a number or numbers separated by '/'; received {v!r}") from None
    if not out or not all(np.isfinite(out)):
        raise ConfigError(f"--preprocess {key} must be finite numbers; received {v!r}")
    return out


def parse_preprocess(spec: str | dict | None) -> dict:
    """The user's ``--preprocess`` as a partial metadata entry (only what was given). ConfigError on a bad one."""
    if spec is None or spec == "":
        return {}
    if isinstance(spec, dict):
        items = dict(spec)
    else:
        items = {}
        for part in str(spec).split(","):
            part = part.strip()
            if not part:
                continue
            if "=" not in part:
                if part.lower() in PRESETS:
                    for k, v in PRESETS[part.lower()].items():
                        items.setdefault(k, v)
                    continue
                raise ConfigError(f"--preprocess takes key=value pairs or a preset; received {part!r}. Keys: "
                                  f"{', '.join(KEYS)}; presets: {', '.join(PRESETS)}")
            k, v = (s.strip() for s in part.split("=", 1))
            k = k.lower()
            if k not in KEYS:
                raise ConfigError(allowed(k, KEYS, "--preprocess key"))
            items[k] = v
    out: dict = {}
    for k, v in items.items():
        if k == "size":
            if isinstance(v, (list, tuple)):
                dims = [int(x) for x in v]
            else:
                try:
                    dims = [int(x) for x in str(v).lower().replace("x", "/").split("/") if x.strip()]
                except ValueError:
                    raise ConfigError(f"--preprocess size must be N or HxW (positive integers); received {v!r}") \
                        from None
            if len(dims) == 1:
                dims = dims * 2
            if len(dims) != 2 or min(dims) < 1:
                raise ConfigError(f"--preprocess size must be N or HxW (positive integers); received {v!r}")
            if max(dims) > MAX_SIZE:  # size=20000 on a dynamic-size model took > 3.2 GB (issue 25)
                raise ConfigError(f"--preprocess size must be at most {MAX_SIZE} a side; received {v!r}")
            out["size"] = dims
        elif k == "layout":
            s = str(v).upper()
            if s not in LAYOUTS:
                raise ConfigError(allowed(v, LAYOUTS, "--preprocess layout"))
            out["layout"] = s
        elif k == "color":
            s = str(v).upper()
            if s not in COLORS:
                raise ConfigError(allowed(v, COLORS, "--preprocess color"))
            out["color"] = s
        elif k == "channels":
            if str(v) not in ("1", "3"):
                raise ConfigError(f"--preprocess channels must be 1 or 3; received {v!r}")
            out["channels"] = int(v)
        else:  # mean, std, scale
            vals = [float(x) for x in v] if isinstance(v, (list, tuple)) else _floats(k, str(v))
            if k in ("std", "scale") and any(x <= 0 for x in vals):
                raise ConfigError(f"--preprocess {k} must be > 0; received {v!r}")
            out[k] = vals
    if "std" in out and "scale" in out:
        raise ConfigError("--preprocess takes std or scale, not both (scale = 1 / std)")
    for k in ("mean", "std", "scale"):
        if k in out and len(out[k]) not in (1, out.get("channels", 3)):
            raise ConfigError(f"--preprocess {k} has {len(out[k])} values; give 1 or one per channel")
    return out


def infer_from_shape(shape) -> dict:
    """Layout, channels and size that a 4-D image input shape tells (None where it can't tell)."""
    s = list(shape)
    if len(s) != 4:
        return {}
    if s[1] in (1, 3) and s[3] not in (1, 3):
        return {"layout": "NCHW", "channels": int(s[1]), "size": [s[2], s[3]]}
    if s[3] in (1, 3) and s[1] not in (1, 3):
        return {"layout": "NHWC", "channels": int(s[3]), "size": [s[1], s[2]]}
    return {}


def resolve(user: dict, input_shape, model_name: str = "the model") -> tuple[dict, dict]:
    """The full image preprocessing entry for a model with ``input_shape``, and what was inferred.

    ``user`` (from :func:`parse_preprocess`) wins where given; what the shape fixes must agree with it.
    Raises ConfigError when something can't be known (dynamic spatial dims and no size)."""
    shape = list(input_shape)
    if len(shape) != 4:
        raise ModelError(f"{model_name} takes input {shape}; an image classifier takes 4-D [N, C, H, W] or "
                         "[N, H, W, C]")
    guess = infer_from_shape(shape)
    layout = user.get("layout") or guess.get("layout")
    if layout is None:
        raise ConfigError(f"{model_name}: can't tell the layout of input {shape}; pass --preprocess layout=NCHW or "
                          "layout=NHWC")
    if guess.get("layout") and layout != guess["layout"]:
        raise ConfigError(f"{model_name}: --preprocess layout={layout} but input {shape} is {guess['layout']}")
    c_dim, hw = (1, (2, 3)) if layout == "NCHW" else (3, (1, 2))
    channels = shape[c_dim] if shape[c_dim] is not None else user.get("channels", 3)
    if user.get("channels") and shape[c_dim] is not None and user["channels"] != shape[c_dim]:
        raise ConfigError(f"{model_name}: --preprocess channels={user['channels']} but input {shape} has "
                          f"{shape[c_dim]}")
    h, w = shape[hw[0]], shape[hw[1]]
    size = user.get("size")
    if size is None:
        if h is None or w is None:
            raise ConfigError(f"{model_name} has dynamic spatial dimensions (input {shape}); pass --preprocess "
                              "size=H or size=HxW")
        size = [int(h), int(w)]
    elif (h is not None and h != size[0]) or (w is not None and w != size[1]):
        raise ConfigError(f"{model_name}: --preprocess size={size[0]}x{size[1]} but input {shape} takes "
                          f"{h}x{w}")
    mean = user.get("mean", [0.0])
    scale = user.get("scale") or ([1.0 / s for s in user["std"]] if "std" in user else [1.0 / 255.0])
    pre = {"type": "image", "size": [int(size[0]), int(size[1])], "channels": int(channels), "layout": layout,
           "color": user.get("color", "RGB"), "mean": [float(m) for m in mean], "scale": [float(s) for s in scale]}
    inferred = {k: pre[k] for k in ("layout", "channels", "size") if k not in user}
    defaulted = [k for k in ("mean", "scale", "color") if k not in user and not (k == "scale" and "std" in user)]
    return pre, {"inferred": inferred, "defaulted": defaulted}


def to_input(pixels: np.ndarray, pre: dict) -> np.ndarray:
    """uint8/float 0-255 pixels [N, H, W, C] in RGB -> the model's float32 input tensor."""
    x = np.asarray(pixels, np.float32)
    if x.ndim == 3:
        x = x[None]
    if str(pre.get("color", "RGB")).upper() == "BGR" and x.shape[-1] == 3:
        x = x[..., ::-1]
    c = x.shape[-1]
    mean = np.asarray(pre.get("mean", 0.0), np.float32).reshape(-1)
    scale = np.asarray(pre.get("scale", 1.0), np.float32).reshape(-1)
    mean = mean if mean.size == c else np.full(c, mean[0], np.float32)
    scale = scale if scale.size == c else np.full(c, scale[0], np.float32)
    x = (x - mean) * scale
    if str(pre.get("layout", "NHWC")).upper() == "NCHW":
        x = x.transpose(0, 3, 1, 2)
    return np.ascontiguousarray(x, np.float32)


# --- image folders for a model's own preprocessing ---------------------------------------------------
def image_files(root: Path) -> list[Path]:
    from .data.folders import IMAGE_SUFFIXES

    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                  and not any(part.startswith(".") for part in p.relative_to(root).parts))


def read_pixels(files, size, channels: int = 3) -> np.ndarray:
    """Images resized to ``size`` (H, W), as uint8 [N, H, W, C] RGB (or gray)."""
    from .data.folders import _read_image

    return np.stack([_read_image(Path(f), tuple(size), channels) for f in files])


def load_image_data(folder, pre: dict, labels: list | None = None, *, holdout: float = 0.5, seed: int = 0):
    """A Dataset of ``folder``'s images as the model's inputs: ``train`` (calibration) and ``test`` (held out).

    Images in class subfolders whose names are all in ``labels`` are labelled (``y`` = index in ``labels``);
    otherwise the images are unlabelled (``y`` = -1) and only a fidelity gate can use them.
    """
    from .data.base import Dataset, stratified_split

    root = Path(folder)
    if not root.is_dir():
        raise DataError(f"Image folder {root} {'is a file' if root.exists() else 'does not exist'}; give a folder "
                        "of images (class subfolders named after the model's labels make them labelled)")
    files = image_files(root)
    if not files:
        from .data.folders import IMAGE_SUFFIXES

        raise DataError(f"Image folder {root} has no images (looked for {', '.join(sorted(IMAGE_SUFFIXES))})")
    if len(files) < 4:
        raise DataError(f"Image folder {root} has {len(files)} images; calibration and a held-out gate need "
                        "at least 4 (hundreds are better)")
    classes = sorted({f.relative_to(root).parts[0] for f in files if len(f.relative_to(root).parts) > 1})
    flat = any(len(f.relative_to(root).parts) == 1 for f in files)
    names = [str(x) for x in (labels or [])]
    labelled = bool(classes) and not flat and bool(names) and all(c in names for c in classes)
    y = np.asarray([names.index(f.relative_to(root).parts[0]) if labelled else -1 for f in files], np.int64)
    x = to_input(read_pixels(files, pre["size"], int(pre.get("channels", 3))), pre)
    if labelled:
        idx = stratified_split(y, {"train": 1 - holdout, "test": holdout}, seed)
    else:
        perm = np.random.default_rng(seed).permutation(len(files))
        cut = int(round(len(files) * (1 - holdout)))
        idx = {"train": np.sort(perm[:cut]), "test": np.sort(perm[cut:])}
    splits = {k: (x[v], y[v]) for k, v in idx.items()}
    ds_labels = names or sorted(classes)
    return Dataset(root.name, "image-classification", ds_labels, splits, dict(pre),
                   {"source": str(root), "labelled": labelled, "classes": classes, "images": len(files)})
