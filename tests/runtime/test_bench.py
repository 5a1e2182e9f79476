import json

import pytest

from edgekit.errors import ConfigError, ModelError
from edgekit.runtime.bench import BenchConfig, benchmark, run_in_process


def test_bench_compares_every_model_and_thread_count(cli, exported_models, tmp_path):
    models = [str(p) for p in exported_models.values()]
    out = tmp_path / "bench.json"
    proc = cli("bench", *models, "--threads", "1,2", "--runs", "20", "--warmup", "2", "--json", str(out), "-q")
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(out.read_text())
    assert len(rows) == 6
    assert {(r["backend"], r["threads"]) for r in rows} == {(b, t) for b in ("litert", "onnxruntime", "openvino")
                                                             for t in (1, 2)}
    for r in rows:
        assert r["runs"] == 20
        assert 0 < r["min_ms"] <= r["p50_ms"] <= r["p90_ms"] <= r["p99_ms"] <= r["max_ms"]
        assert r["load_ms"] > 0 and r["first_ms"] > 0 and r["peak_rss_mb"] > 10 and r["size_bytes"] > 10_000
        assert r["throughput"] == pytest.approx(1000 / r["mean_ms"], rel=1e-6)
    header = proc.stdout.splitlines()[0]
    for col in ("p50_ms", "p99_ms", "items/s", "peak_rss_mb", "load_ms", "first_ms"):
        assert col in header
    assert len(proc.stdout.strip().splitlines()) == 2 + 6


def test_batch_and_duration(exported_models):
    r = run_in_process(BenchConfig(str(exported_models["onnx"]), batch=4, warmup=1, runs=None, duration=0.3))
    assert r.batch == 4 and r.runs >= 5
    assert r.throughput == pytest.approx(4 * 1000 / r.mean_ms, rel=1e-6)


def test_bad_arguments(cli, exported_models, tmp_path):
    with pytest.raises(ConfigError, match="batch must be >= 1"):
        benchmark([exported_models["tflite"]], batch=0)
    with pytest.raises(ModelError, match="No such model file"):
        benchmark([tmp_path / "x.tflite"])
    proc = cli("bench", str(exported_models["tflite"]), "--threads", "0")
    assert proc.returncode == 2 and "--threads must be positive" in proc.stderr
    proc = cli("bench", str(exported_models["tflite"]), "--device", "tpu", "--runs", "2")
    assert proc.returncode == 2 and "Unknown device 'tpu'" in proc.stderr and "Traceback" not in proc.stderr
