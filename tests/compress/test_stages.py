"""edgekit compress chains the stages a recipe's steps wrap (edgekit/compress/stages.py); the recipe face of
the same rules is checked in tests/pipeline/test_one_path.py."""

import pytest


def test_the_command_measures_latency_with_a_typed_bench_config(int8_all):
    """ExportConfig(bench_runs=5) is BenchConfig(runs=5): every row, reference included, says it was timed with
    1 thread, 5 runs after 10 warmup runs, the settings a recipe's bench: section gives the same stage."""
    assert len(int8_all.rows) >= 6
    for row in int8_all.rows:
        b = row.to_dict()["bench"]
        assert {k: b[k] for k in ("threads", "runs", "warmup")} == {"threads": 1, "runs": 5, "warmup": 10}
        assert b["backend"] and row.p50_ms > 0 and row.p99_ms >= row.p50_ms


def test_export_config_bench_is_one_typed_setting():
    from edgekit.compress import ExportConfig
    from edgekit.errors import ConfigError
    from edgekit.passes import BenchConfig

    assert ExportConfig().validate().bench == BenchConfig()  # 100 runs, 1 thread, as --bench-runs' default
    assert ExportConfig(bench_runs=7).validate().bench == BenchConfig(runs=7)
    assert ExportConfig(bench_runs=0).validate().bench is None  # no latency
    cfg = ExportConfig(bench=BenchConfig(threads=2, runs=3, warmup=1)).validate()
    assert (cfg.bench.threads, cfg.bench.runs, cfg.bench.warmup) == (2, 3, 1)
    with pytest.raises(ConfigError, match=r"bench_runs \(7\) and bench.runs \(3\) disagree"):
        ExportConfig(bench_runs=7, bench=BenchConfig(runs=3)).validate()
    with pytest.raises(ConfigError, match="Bench threads must be >= 1; received 0"):
        ExportConfig(bench=BenchConfig(threads=0)).validate()


def test_float_gate_deletes_a_miss_and_keeps_what_passed(digits_cnn, tmp_path):
    """stages.gate_floats, the float rule of both faces, on real exports of the session's digits model."""
    from edgekit.compat import load_keras_model
    from edgekit.artifact import read_meta
    from edgekit.compress.gate import top1_of
    from edgekit.compress.stages import export_float, gate_floats
    from edgekit.data import load_dataset

    ds = load_dataset("digits")
    model = load_keras_model(digits_cnn)
    staged = export_float(model, ("tflite",), tmp_path / "a", "m", read_meta(digits_cnn), lambda s: None)
    top1 = top1_of(model, ds, "test")
    ok = gate_floats(staged, ds, "test", top1, 1.0)
    assert list(ok.passed) == ["tflite"] and ok.failures == [] and ok.passed["tflite"].exists()
    missed = gate_floats(ok.passed, ds, "test", min(1.0, top1 + 0.1), 1.0)
    assert missed.passed == {} and missed.failures[0]["format"] == "tflite"
    assert missed.failures[0]["attempts"][0]["drop"] > 1.0 and not ok.passed["tflite"].exists()
