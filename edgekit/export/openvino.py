"""Keras 3 → OpenVINO IR (.xml + .bin) with ``openvino.convert_model`` on the SavedModel."""

from __future__ import annotations

import json
from pathlib import Path

from ..artifact import META_KEY, ArtifactMeta
from ..errors import MissingDependencyError, ModelError, first_line
from .base import Exporter, SourceModel


class OpenVINOExporter(Exporter):
    name = "openvino"
    suffix = ".xml"
    companions = (".bin",)

    def convert(self, src: SourceModel, out: Path, *, compress_to_fp16: bool = False, transform=None,
                **options) -> dict:
        """``transform(ov_model) -> ov_model`` lets compression passes (NNCF) act before saving."""
        try:
            import openvino as ov
        except ImportError:
            raise MissingDependencyError("openvino", "openvino", what="Exporting to OpenVINO IR") from None
        try:
            model = ov.convert_model(str(src.saved_model_dir()))
        except Exception as e:
            msg = first_line(e)
            raise ModelError(f"openvino.convert_model failed: {msg[:300]}") from None
        if transform is not None:
            model = transform(model)
        self._model = model
        # fp16 weight compression is off by default: float artifacts must match the source to 1e-4.
        ov.save_model(model, str(out), compress_to_fp16=compress_to_fp16)
        return {"tool": f"openvino {ov.get_version()}", "compress_to_fp16": compress_to_fp16}

    def embed_metadata(self, out: Path, meta: ArtifactMeta) -> bool:
        import openvino as ov

        core = ov.Core()
        model = core.read_model(str(out))
        model.set_rt_info(json.dumps(meta.to_dict(), default=str), [META_KEY])
        tmp = out.with_name(out.stem + ".meta-tmp.xml")
        # Weights are unchanged, but save_model writes both files; rename over the originals.
        ov.save_model(model, str(tmp), compress_to_fp16=False)
        tmp.with_suffix(".bin").replace(out.with_suffix(".bin"))
        tmp.replace(out)
        return True
