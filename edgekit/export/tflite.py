"""Keras 3 / SavedModel → TFLite with tf.lite.TFLiteConverter (float here; int8 via ``quantize`` options)."""

from __future__ import annotations

from pathlib import Path

from .base import Exporter, SourceModel, _tf


class TFLiteExporter(Exporter):
    name = "tflite"
    suffix = ".tflite"

    def make_converter(self, src: SourceModel):
        tf = _tf()
        # from_keras_model re-exports a SavedModel internally (and prints every captured tensor);
        # converting the SavedModel the other formats share is equivalent, quiet, and done once.
        return tf.lite.TFLiteConverter.from_saved_model(str(src.saved_model_dir()))

    def convert(self, src: SourceModel, out: Path, *, configure=None, **options) -> dict:
        """``configure(converter)`` lets compression passes set optimizations and calibration data."""
        tf = _tf()
        conv = self.make_converter(src)
        if configure is not None:
            configure(conv)
        data = conv.convert()
        out.write_bytes(data)
        return {"tool": f"tensorflow {tf.__version__}", "converter": "TFLiteConverter"}
