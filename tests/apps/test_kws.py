"""Streaming keyword spotting on a real trained model and real espeak speech: features, detections,
scoring, speed, the CLI, remote mode, and bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from edgekit.apps.kws import KeywordSpotter, RingBuffer, load_events, microphone_available, score
from edgekit.errors import ConfigError, DataError, ModelError
from edgekit.features import Frontend
from edgekit.runtime import load


def test_ring_buffer_keeps_the_newest_samples():
    rb = RingBuffer(10)
    assert np.all(rb.latest() == 0)
    stream = np.arange(1, 38, dtype=np.float32)
    pos = 0
    for n in (3, 7, 1, 12, 4, 10):
        rb.push(stream[pos:pos + n])
        pos += n
        want = np.concatenate([np.zeros(10), stream[:pos]])[-10:]
        np.testing.assert_array_equal(rb.latest(), want)
        np.testing.assert_array_equal(rb.latest(4), want[-4:])
    assert rb.total == pos
    with pytest.raises(ConfigError):
        RingBuffer(0)


def test_streaming_windows_equal_the_batch_frontend(kws_model, kws_stream):
    """Whatever the block size, each hop classifies exactly the batch features of the last second."""
    session = load(kws_model)
    fe = Frontend.from_preprocessing(session.meta.preprocessing)
    audio = kws_stream["audio"][:3 * 16000]
    spotter = KeywordSpotter(session, hop_ms=100)
    got = []
    for block in (137, 2000, 1, 4096):  # odd sizes on purpose: hops must not depend on them
        spotter = KeywordSpotter(session, hop_ms=100)
        posts = []
        for i in range(0, len(audio), block):
            posts.extend(spotter.source.push(audio[i:i + block]))
        got.append(posts)
    times = [t for t, _ in got[0]]
    np.testing.assert_allclose(times, 1.0 + 0.1 * np.arange(len(times)), atol=1e-9)
    assert len(times) == 21 and all(len(g) == 21 for g in got)
    for j, t in enumerate(times):
        end = int(round(t * 16000))
        want = session.predict(fe(audio[end - 16000:end])[None])[0]
        for g in got:
            np.testing.assert_allclose(g[j][1], want, atol=1e-4)


def test_detects_keywords_in_a_labelled_stream(kws_model, kws_stream):
    spotter = KeywordSpotter(load(kws_model, threads=1), hop_ms=100, threshold=0.7)
    result = spotter.run(kws_stream["audio"])
    s = score(result.detections, load_events(kws_stream["labels"]))
    n = len(kws_stream["keywords"])
    assert s["keywords"] == n == 12
    assert s["hits"] + s["misses"] == n
    # A model trained for a minute, on unseen voices: well above chance (about 0 hits) but not the
    # benchmark's >= 90%; benchmarks/demo_goals.py holds the properly trained model to the goal.
    assert s["hits"] >= 6 and s["false_alarms"] <= 5, s
    for h in s["hit_list"]:  # each hit lies in the window of its keyword and carries its score
        assert h["start"] <= h["time"] <= h["end"] + 1.5 and h["score"] >= 0.7
    assert result.audio_seconds == pytest.approx(40.0)
    assert result.inferences == 391  # one per 100 ms hop after the first full second
    assert result.real_time_factor <= 0.1, result.to_dict()


def test_refractory_and_threshold_shape_the_detections(kws_model, kws_stream):
    session = load(kws_model)
    audio = kws_stream["audio"]
    base = KeywordSpotter(session, threshold=0.5, refractory_ms=0).run(audio).detections
    strict = KeywordSpotter(session, threshold=0.95, refractory_ms=0).run(audio).detections
    long_quiet = KeywordSpotter(session, threshold=0.5, refractory_ms=4000).run(audio).detections
    assert len(strict) < len(base) and all(d.score >= 0.95 for d in strict)
    assert all(b.time - a.time >= 4.0 for a, b in zip(long_quiet, long_quiet[1:]))
    assert len(long_quiet) < len(base)
    only = KeywordSpotter(session, threshold=0.5, keywords=["yes", "no"]).run(audio).detections
    assert {d.label for d in only} <= {"yes", "no"}


def test_scoring_counts_hits_misses_and_false_alarms():
    from edgekit.apps.kws import Detection, Event

    events = [Event("yes", 1.0, 1.4), Event("_unknown_", 3.0, 4.0), Event("no", 6.0, 6.3), Event("up", 9.0, 9.3)]
    dets = [Detection("yes", 1.6, 0.9, 2), Detection("yes", 3.8, 0.7, 2),  # second "yes" during a distractor
            Detection("no", 6.2, 0.8, 3), Detection("no", 6.9, 0.8, 3),  # one event, two detections
            Detection("left", 9.5, 0.9, 6)]  # wrong word over "up"
    s = score(dets, events)
    assert (s["keywords"], s["hits"], s["misses"], s["false_alarms"]) == (3, 2, 1, 3)
    assert s["miss_list"][0]["label"] == "up" and s["recall"] == pytest.approx(2 / 3, abs=1e-4)


def test_cli_scores_a_wav_and_reports_speed(cli, kws_model, kws_stream, tmp_path):
    out = tmp_path / "result.json"
    p = cli("demo", "mic", "--model", str(kws_model), "--wav", str(kws_stream["wav"]),
            "--labels-file", str(kws_stream["labels"]), "--json", str(out))
    assert p.returncode == 0, p.stderr
    doc = json.loads(out.read_text())
    printed = [line.split() for line in p.stdout.splitlines() if line.strip().endswith(tuple("0123456789"))
               and "s " in line and line.split()[0].endswith("s")]
    assert len(printed) == len(doc["detections"]) > 0  # each detection printed: time, label, score
    assert [x[1] for x in printed] == [d["label"] for d in doc["detections"]]
    s = doc["score"]
    assert s["hits"] >= 6 and s["false_alarms"] <= 5 and s["keywords"] == 12
    assert doc["real_time_factor"] <= 0.1 and doc["audio_seconds"] == pytest.approx(40.0)
    assert "real_time_factor" in p.stdout and "false_alarms" in p.stdout  # the table


def test_remote_mode_finds_the_same_keywords(kws_model, kws_stream):
    from edgekit.apps.remote import RemoteModel
    from edgekit.serve.server import ServerThread

    local = KeywordSpotter(load(kws_model)).run(kws_stream["audio"])
    with ServerThread([str(kws_model)]) as srv:
        remote = KeywordSpotter(RemoteModel(srv.url + "/v2/models/model")).run(kws_stream["audio"])
    assert remote.inferences == local.inferences
    # The server recomputes the features from 16-bit WAV windows: the same detections, give or take one.
    assert abs(len(remote.detections) - len(local.detections)) <= 1
    same = {(d.label, round(d.time, 1)) for d in remote.detections} & {(d.label, round(d.time, 1)) for d in local.detections}
    assert len(same) >= len(local.detections) - 2


def test_bad_inputs_exit_2(cli, kws_model, exported_models, kws_stream, tmp_path):
    p = cli("demo", "mic", "-m", str(exported_models["tflite"]), "--wav", str(kws_stream["wav"]))
    assert p.returncode == 2 and "needs a keyword-spotting model" in p.stderr and "takes images" in p.stderr
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF\x10\x00\x00\x00WAVEjunkjunkjunk")
    p = cli("demo", "mic", "-m", str(kws_model), "--wav", str(bad))
    assert p.returncode == 2 and "Can't read WAV file" in p.stderr and "Traceback" not in p.stderr
    p = cli("demo", "mic", "-m", str(kws_model), "--wav", str(tmp_path / "nope.wav"))
    assert p.returncode == 2 and "No such WAV file" in p.stderr
    p = cli("demo", "mic", "-m", str(kws_model), "--labels-file", str(kws_stream["labels"]))
    assert p.returncode == 2 and "--wav" in p.stderr
    p = cli("demo", "mic", "-m", str(kws_model), "--wav", str(kws_stream["wav"]), "--threshold", "1.5")
    assert p.returncode == 2 and "threshold must be in (0, 1]" in p.stderr
    p = cli("demo", "mic", "-m", str(kws_model), "--wav", str(kws_stream["wav"]), "--keywords", "yes,banana")
    assert p.returncode == 2 and "'banana'" in p.stderr
    (tmp_path / "truth.json").write_text('{"events": [{"label": "yes"}]}')
    p = cli("demo", "mic", "-m", str(kws_model), "--wav", str(kws_stream["wav"]), "--labels-file", str(tmp_path / "truth.json"))
    assert p.returncode == 2 and "needs 'label', 'start' and 'end'" in p.stderr


@pytest.mark.skipif(microphone_available()[0], reason="a microphone is present here: the live path would listen")
def test_no_microphone_is_a_clear_error(cli, kws_model):
    p = cli("demo", "mic", "-m", str(kws_model), "--duration", "1")
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert "microphone" in p.stderr.lower() and "--wav" in p.stderr


def test_library_errors(kws_model, exported_models):
    with pytest.raises(ModelError, match="takes images"):
        KeywordSpotter(load(exported_models["onnx"]))
    with pytest.raises(ConfigError, match="hop_ms"):
        KeywordSpotter(load(kws_model), hop_ms=0)
    with pytest.raises(DataError, match="No such labels file"):
        load_events("/nonexistent/truth.json")


def test_device_side_never_imports_tensorflow(kws_model, kws_stream):
    """The apps, run end to end on a local model, leave TensorFlow and Keras out of the process."""
    code = f"""
import sys
import edgekit.apps.kws, edgekit.apps.camera, edgekit.apps.remote, edgekit.commands.demo
from edgekit.apps.kws import KeywordSpotter, read_audio
from edgekit.runtime import load
s = KeywordSpotter(load({str(kws_model)!r}))
r = s.run(read_audio({str(kws_stream['wav'])!r}, s.sample_rate))
assert r.inferences > 0
bad = sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras', 'tf_keras'))
print(bad)
sys.exit(1 if bad else 0)
"""
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
