"""OpenVINO int8: NNCF PTQ on the converted model, ``model_type=TRANSFORMER`` when the model has attention,
audio front-end ops (DFT, RDFT) ignored when one is in the graph."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Callable

import numpy as np

from ...artifact import read_meta, write_meta
from ...errors import MissingDependencyError
from ...passes import QuantizeConfig
from ..quantize import int8_meta

FRONTEND_OV_TYPES = ["DFT", "RDFT", "IDFT", "IRDFT"]
# In-graph feature normalization (zoo.layers.TimeMeanNormalization: ReduceMean + Subtract) stays float.
# NNCF otherwise quantizes both inputs of the Subtract at the raw features' scale, and the small
# differences that remain after removing the mean lose most of their resolution: ds_cnn_s on keywords
# lost 3.3 points at the first rung with it quantized (measured), none with it kept float.
FLOAT_NAME_PATTERNS = [".*time_mean_norm.*"]


def quantize(model, float_artifact: Path | None, stage: Path, name: str, meta, cfg: QuantizeConfig,
             calib: np.ndarray, say, *, source=None, transformer: bool = False) -> Path:
    """The int8 IR (``.xml`` + ``.bin``) of ``model`` under ``stage``, NNCF applied during conversion."""
    from ...export import export_model
    from ...export.openvino import OpenVINOExporter

    record: dict = {}
    tr = openvino_transform(cfg, calib, transformer=transformer, record=record)
    m = int8_meta(meta, cfg, {"scheme": "NNCF PTQ"}, len(calib))
    res = export_model(model, ["openvino"], stage, name=name, meta=m, verify=False, progress=say,
                       options={"openvino": {"transform": tr}})
    path = res.artifacts["openvino"]
    final_meta = read_meta(path)
    final_meta.quantization.update(record)
    write_meta(path, final_meta)
    OpenVINOExporter().embed_metadata(path, final_meta)
    return path


def openvino_transform(cfg: QuantizeConfig, calib: np.ndarray, *, transformer: bool, record: dict) -> Callable:
    """A ``transform(ov_model)`` hook for the OpenVINO exporter that runs NNCF PTQ."""

    def transform(ov_model):
        try:
            import nncf
        except ImportError:
            raise MissingDependencyError("nncf", "train", what="OpenVINO int8 quantization") from None
        types = sorted({op.get_type_name() for op in ov_model.get_ops()})
        ignored_types = [t for t in FRONTEND_OV_TYPES if t in types]
        names = list(cfg.keep_float)
        if cfg.float_sensitive and not names:
            weighted = [op.get_friendly_name() for op in ov_model.get_ordered_ops()
                        if op.get_type_name() in ("Convolution", "GroupConvolution", "MatMul")]
            names = list(dict.fromkeys([weighted[0], weighted[-1]])) if weighted else []
        patterns = [p for p in FLOAT_NAME_PATTERNS
                    if any(re.fullmatch(p, op.get_friendly_name()) for op in ov_model.get_ops())]
        scope = nncf.IgnoredScope(types=ignored_types, names=names, patterns=patterns, validate=False) \
            if (ignored_types or names or patterns) else None
        dataset = nncf.Dataset([calib[i:i + 1] for i in range(len(calib))])
        kw = {}
        if transformer:
            kw["model_type"] = nncf.ModelType.TRANSFORMER
        adv = nncf.AdvancedQuantizationParameters(
            weights_quantization_params=None if cfg.per_channel else nncf.quantization.advanced_parameters
            .QuantizationParameters(per_channel=False))
        q = nncf.quantize(ov_model, dataset, subset_size=len(calib), ignored_scope=scope,
                          advanced_parameters=adv, **kw)
        record.update({"scheme": "NNCF PTQ", "model_type": "transformer" if transformer else "default",
                       "ignored_types": ignored_types, "kept_float": names + patterns, "per_channel": cfg.per_channel})
        return q

    return transform
