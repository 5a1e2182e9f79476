"""int8 quantizers, one module per format, behind a registry read from the format table (edgekit/formats.py).

Each module has ``quantize(model, float_artifact, stage, name, meta, cfg, calib, say, *, source, transformer)
-> Path``: one int8 artifact under ``stage``, not gated yet (the engine gates it).
"""

from __future__ import annotations

from ...formats import TABLE
from ...registry import Registry

quantizers: Registry = Registry("int8 quantizer", "edgekit.quantizers")
for _f in TABLE:
    quantizers.register(_f.name, _f.quantizer)
