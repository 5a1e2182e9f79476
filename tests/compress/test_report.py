"""The one artifact row and the one report writer every face uses (edgekit compress on a Keras model, a foreign
model, a recipe run): the keys report.json has always had, units, the ratios against the float reference."""

import json

import pytest

from edgekit.compress.report import (ArtifactRow, CompressReport, markdown, relate_to_references, render,
                                     write_compress_report, write_report)

KERAS_KEYS = {"artifact", "format", "precision", "sparsity", "params", "size_kb", "gzip_kb", "top1", "drop", "p50_ms",
              "gate", "remedy", "weights", "size_bytes", "gzip_bytes"}
FOREIGN_KEYS = {"artifact", "format", "precision", "agreement", "top5", "mean_abs_err", "gate", "remedy", "size_bytes",
                "size_kb", "p50_ms"}


def _keras_rows():
    ref = ArtifactRow("reference/m.tflite", "tflite", "float32", "reference", {"top1": 0.9, "drop": 0.0},
                      "points of top-1", size_bytes=40_000, gzip_bytes=36_000, p50_ms=2.0, sparsity=0.0,
                      params=10_000, weights={"float32": 10})
    q = ArtifactRow("m_int8.tflite", "tflite", "int8", "pass", {"top1": 0.89, "drop": 1.0}, "points of top-1",
                    size_bytes=12_000, gzip_bytes=9_000, p50_ms=4.0, remedy="per-channel", sparsity=0.0,
                    params=10_000, weights={"int8": 10})
    return [ref, q]


def test_a_keras_row_keeps_its_report_keys_and_says_its_units():
    rows = _keras_rows()
    relate_to_references(rows)
    d = rows[1].to_dict()
    assert KERAS_KEYS | {"size_x", "gzip_x", "speedup", "units"} == set(d)
    assert d["size_kb"] == pytest.approx(12_000 / 1024) and d["gzip_kb"] == pytest.approx(9_000 / 1024)
    assert (d["size_x"], d["gzip_x"], d["speedup"]) == (pytest.approx(0.3), pytest.approx(0.25), pytest.approx(0.5))
    assert d["units"]["drop"] == "points of top-1" and d["units"]["p50_ms"] == "ms" and d["units"]["top1"] == "fraction"
    # Read like the dict rows it replaced (the CLI, the device pick and scripts index rows).
    assert rows[1]["top1"] == 0.89 and rows[1].get("missing", 7) == 7 and rows[1].passed


def test_a_foreign_row_has_its_fidelity_columns_and_no_keras_ones():
    ref = ArtifactRow("reference/m.onnx", "onnx", "float32", "reference",
                      {"agreement": 1.0, "top5": 1.0, "mean_abs_err": 0.0}, size_bytes=1000, p50_ms=1.0)
    q = ArtifactRow("m_int8.onnx", "onnx", "int8", "pass", {"agreement": 0.95, "top5": 1.0, "mean_abs_err": 0.01},
                    size_bytes=300, p50_ms=None, remedy="none")
    relate_to_references([ref, q])
    d = q.to_dict()
    assert set(d) == FOREIGN_KEYS | {"size_x", "units"}  # no latency measured: no speed-up, no gzip
    assert d["size_x"] == pytest.approx(0.3) and "drop" not in d["units"]


def test_a_recipe_row_relates_to_its_float32_row_and_carries_its_gates():
    fl = ArtifactRow("steps/e/model.onnx", "onnx", "float32", "pass", {"top1": 0.9, "drop": 0.0}, size_bytes=1000,
                     gzip_bytes=900, p50_ms=1.0, gates={"max_drop": {"limit": 1, "value": 0.0, "passed": True}},
                     extra={"path": "steps/e/model.onnx"})
    q = ArtifactRow("steps/q/model_int8.onnx", "onnx", "int8", "FAIL max_drop", {"top1": 0.8, "drop": 10.0},
                    size_bytes=250, gzip_bytes=200, p50_ms=2.0,
                    gates={"max_drop": {"limit": 1, "value": 10.0, "passed": False}})
    relate_to_references([fl, q])
    assert (q.size_x, q.speedup) == (pytest.approx(0.25), pytest.approx(0.5)) and fl.size_x == 1.0
    d, f = q.to_dict(), fl.to_dict()
    assert d["gates_passed"] is False and f["gates_passed"] is True and f["path"] == "steps/e/model.onnx"


def test_one_writer_for_every_face(tmp_path):
    rows = _keras_rows()
    relate_to_references(rows)
    keras = CompressReport(tmp_path / "k", rows, {"reference": {"model": "m.keras", "top1": 0.9, "split": "test"}},
                           failures=[{"artifact": "m_int8.onnx", "format": "onnx",
                                      "attempts": [{"remedy": "none", "top1": 0.5, "drop": 40.0, "passed": False}]}],
                           notes=["a note"])
    (tmp_path / "k").mkdir()
    write_compress_report(keras)
    rep = json.loads((tmp_path / "k" / "report.json").read_text())
    assert list(rep) == ["out_dir", "rows", "steps", "chosen", "failures", "notes"]
    assert rep["rows"][1]["remedy"] == "per-channel" and rep["rows"][1]["units"]["drop"] == "points of top-1"
    md = (tmp_path / "k" / "report.md").read_text()
    assert md.startswith("# edgekit compress report\n") and "| m_int8.tflite |" in md and "none: drop 40.00" in md
    assert "FAILED gate: m_int8.onnx (tried: none)" in render(keras)

    fid = ArtifactRow("m_int8.onnx", "onnx", "int8", "pass", {"agreement": 0.95, "top5": 1.0, "mean_abs_err": 0.01},
                      size_bytes=300)
    foreign = CompressReport(tmp_path / "f", [fid], {"reference": {"model": "m.onnx", "top1": None}, "held_out": 20,
                                                     "calibration": 40}, mode="fidelity", gate_rule="agreement >= 0.9")
    (tmp_path / "f").mkdir()
    write_compress_report(foreign)
    rep = json.loads((tmp_path / "f" / "report.json").read_text())
    assert list(rep) == ["out_dir", "mode", "rows", "steps", "failures", "notes"] and rep["mode"] == "fidelity"
    assert "agreement >= 0.9, on 20 held-out images" in markdown(foreign)

    paths = write_report(tmp_path / "r", {"recipe": "x", "artifacts": []}, "# x\n", "<html></html>")
    assert sorted(paths) == ["html", "json", "md"] and json.loads(paths["json"].read_text())["recipe"] == "x"
    assert not [p for p in (tmp_path / "r").iterdir() if p.name not in ("report.json", "report.md", "report.html")]
