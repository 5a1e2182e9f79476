"""Keras 3 → ONNX: SavedModel (``model.export``) then tf2onnx, the route that works for Keras 3."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from ..artifact import META_KEY, ArtifactMeta
from ..errors import MissingDependencyError, ModelError
from .base import Exporter, SourceModel

DEFAULT_OPSET = 17


class ONNXExporter(Exporter):
    name = "onnx"
    suffix = ".onnx"

    def convert(self, src: SourceModel, out: Path, *, opset: int = DEFAULT_OPSET, **options) -> dict:
        try:
            import onnx
            import tf2onnx
        except ImportError as e:
            raise MissingDependencyError(e.name or "tf2onnx", "train", what="Exporting to ONNX") from None
        sm = src.saved_model_dir()
        # A subprocess keeps tf2onnx's global graph state and its noisy logging out of this process.
        cmd = [sys.executable, "-m", "tf2onnx.convert", "--saved-model", str(sm), "--output", str(out),
               "--opset", str(opset), "--signature_def", "serving_default"]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0 or not out.exists():
            tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-5:])
            raise ModelError(f"tf2onnx could not convert the model (opset {opset}):\n{tail}")
        from .onnx_fold import fold_conv_affine, replace_erfc

        m = onnx.load(str(out))
        erfc = replace_erfc(m)
        folded = fold_conv_affine(m)
        if folded or erfc:
            onnx.save(m, str(out))
        onnx.checker.check_model(str(out))
        return {"tool": f"tf2onnx {tf2onnx.__version__}, onnx {onnx.__version__}", "opset": opset,
                "folded_affine": folded}

    def embed_metadata(self, out: Path, meta: ArtifactMeta) -> bool:
        import onnx

        m = onnx.load(str(out))
        keep = [p for p in m.metadata_props if p.key != META_KEY]
        del m.metadata_props[:]
        m.metadata_props.extend(keep)
        m.metadata_props.add(key=META_KEY, value=json.dumps(meta.to_dict(), default=str))
        if meta.labels and not any(p.key == "labels" for p in keep):
            m.metadata_props.add(key="labels", value=",".join(map(str, meta.labels)))
        m.producer_name = "edgekit"
        onnx.save(m, str(out))
        return True
