"""Stream post-processing, matching, metrics and the calibration sweep on constructed posteriors (exact numbers)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgekit.apps.streams import (Event, OperatingPoint, PostProcessor, Stream, _Scored, _summary, check_events,
                                  detect, load_streams, match, smooth, sweep)
from edgekit.errors import ConfigError, DataError

LABELS = ["_silence_", "_unknown_", "yes", "no"]
KW = [2, 3]


def posteriors(n: int, bumps: dict) -> tuple[np.ndarray, np.ndarray]:
    """``n`` hops (100 ms, the first at 1 s) of silence, with ``bumps`` {label: [(first hop, last hop, p)]}."""
    P = np.zeros((n, 4), np.float64)
    P[:, 0] = 1.0
    for lab, runs in bumps.items():
        for a, b, p in runs:
            P[a:b + 1, LABELS.index(lab)] = p
            P[a:b + 1, 0] = 1.0 - p
    return 1.0 + 0.1 * np.arange(n), P


def streamed(t, P, op):
    pp = PostProcessor(LABELS, KW, op)
    return [d for i in range(len(t)) if (d := pp.push(float(t[i]), P[i])) is not None]


def test_one_word_fires_once_where_the_average_reaches_the_threshold():
    t, P = posteriors(40, {"yes": [(10, 15, 0.75)]})
    op = OperatingPoint(threshold=0.5, smooth_ms=300, refractory_ms=1000)
    d = detect(t, P, LABELS, KW, op)
    # mean of 3 hops: hop 10 -> 0.25, hop 11 -> 0.5 (fires), stays up to hop 16 (0.5) without firing again.
    assert [(x.label, round(x.time, 3), round(x.score, 6)) for x in d] == [("yes", 2.1, 0.5)]
    assert [(x.label, round(x.time, 3)) for x in streamed(t, P, op)] == [("yes", 2.1)]
    assert detect(t, P, LABELS, KW, OperatingPoint(threshold=0.76, smooth_ms=0)) == []


def test_refractory_time_and_fading_rule():
    # "no" right after "yes" (0.5 s later) is suppressed by a 1-s refractory time, and fires without one.
    t, P = posteriors(60, {"yes": [(10, 12, 1.0)], "no": [(16, 18, 1.0)]})
    op = OperatingPoint(threshold=0.9, smooth_ms=100, refractory_ms=1000)
    assert [(x.label, round(x.time, 2)) for x in detect(t, P, LABELS, KW, op)] == [("yes", 2.0)]
    op0 = OperatingPoint(threshold=0.9, smooth_ms=100, refractory_ms=0)
    assert [(x.label, round(x.time, 2)) for x in detect(t, P, LABELS, KW, op0)] == [("yes", 2.0), ("no", 2.6)]
    # One long "yes" (3 s) fires once even with no refractory time: it must fade before it fires again.
    t, P = posteriors(80, {"yes": [(10, 40, 1.0), (45, 47, 1.0)]})
    assert [round(x.time, 2) for x in detect(t, P, LABELS, KW, op0)] == [2.0, 5.5]


def test_per_keyword_thresholds():
    t, P = posteriors(60, {"yes": [(10, 14, 0.6)], "no": [(35, 39, 0.6)]})
    base = OperatingPoint(threshold=0.5, smooth_ms=100)
    assert [x.label for x in detect(t, P, LABELS, KW, base)] == ["yes", "no"]
    strict_no = OperatingPoint(threshold=0.5, smooth_ms=100, thresholds={"no": 0.7})
    assert [x.label for x in detect(t, P, LABELS, KW, strict_no)] == ["yes"]
    assert [x.label for x in streamed(t, P, strict_no)] == ["yes"]


@pytest.mark.parametrize("op", [OperatingPoint(0.5, 300, 1000), OperatingPoint(0.35, 700, 0),
                                OperatingPoint(0.6, 0, 500, thresholds={"no": 0.8})])
def test_batch_replay_equals_the_streaming_spotter(op):
    rng = np.random.default_rng(0)
    P = rng.dirichlet(np.full(4, 0.3), size=3000)
    t = 1.0 + 0.1 * np.arange(len(P))
    a = [(d.label, round(d.time, 6)) for d in detect(t, P, LABELS, KW, op)]
    b = [(d.label, round(d.time, 6)) for d in streamed(t, P, op)]
    assert a == b and len(a) > 20


def test_smooth_is_a_causal_mean():
    P = np.arange(10, dtype=float).reshape(5, 2)
    np.testing.assert_allclose(smooth(P, 2), [[0, 1], [1, 2], [3, 4], [5, 6], [7, 8]])


def test_matching_hits_misses_false_alarms_latency_and_fa_per_hour():
    from edgekit.apps.streams import Detection

    events = [Event("yes", 2.0, 2.5), Event("no", 10.0, 10.4), Event("yes", 20.0, 20.6), Event("_unknown_", 30.0, 31.0)]
    dets = [Detection("yes", 2.9, 0.8, 2), Detection("yes", 3.2, 0.8, 2),  # hit (latency 0.4), then a duplicate
            Detection("yes", 10.5, 0.8, 2),  # wrong word at "no": a false alarm, and "no" is missed
            Detection("yes", 22.2, 0.8, 2),  # 1.6 s after the end: outside the 1.5-s tolerance
            Detection("no", 30.5, 0.9, 3)]   # on distractor speech
    m = match(dets, events, tolerance_s=1.5)
    assert [(d.time, e.start) for d, e in m["hits"]] == [(2.9, 2.0)]
    assert [e.start for e in m["misses"]] == [10.0, 20.0]
    assert [d.time for d in m["false_alarms"]] == [3.2, 10.5, 22.2, 30.5]
    s = _summary([m], seconds=1800.0, keywords=["yes", "no"])
    assert (s["keywords"], s["hits"], s["recall"], s["false_reject_rate"]) == (3, 1, 0.3333, 0.6667)
    assert s["false_alarms"] == 4 and s["fa_per_hour"] == 8.0
    assert s["latency_s"]["p50"] == 0.4
    per = {p["keyword"]: p for p in s["per_keyword"]}
    assert (per["yes"]["events"], per["yes"]["hits"], per["yes"]["false_alarms"]) == (2, 1, 3)
    assert (per["no"]["events"], per["no"]["hits"], per["no"]["fa_per_hour"]) == (1, 0, 2.0)


def test_per_speaker_recall_and_false_alarms_name_the_voice_that_sets_the_operating_point():
    from edgekit.apps.streams import Detection, per_speaker, speaker_of

    # The built-in streams write "voice": a voice's tempo/pitch variants (~N) and espeak's accent are one speaker;
    # a user's events say "speaker", kept as given.
    assert speaker_of({"voice": "flite:awb~2"}) == "flite:awb"
    assert speaker_of({"voice": "espeak:m3~1 (en-sc+m3)"}) == "espeak:m3"
    assert speaker_of({"speaker": "anna~2", "voice": "x"}) == "anna~2" and speaker_of({}) == ""
    raw = [{"label": "yes", "start": 2.0, "end": 2.5, "voice": "flite:awb~0"},
           {"label": "no", "start": 10.0, "end": 10.4, "voice": "flite:awb~3"},
           {"label": "yes", "start": 20.0, "end": 20.6, "voice": "espeak:m3 (en-us+m3)"},
           {"label": "_unknown_", "start": 30.0, "end": 90.0, "voice": "espeak:m3~2"},
           {"label": "_unknown_", "start": 100.0, "end": 220.0, "voice": "flite:awb~1"},
           {"label": "_noise_", "start": 230.0, "end": 231.0}]
    events = check_events(raw, "s")
    dets = [Detection("yes", 2.9, 0.8, 2), Detection("yes", 10.5, 0.8, 2),  # hit; "no" heard as "yes"
            Detection("yes", 20.9, 0.8, 2),  # hit
            Detection("go", 91.0, 0.7, 4),  # 1 s after m3's turn: his
            Detection("up", 150.0, 0.7, 5), Detection("go", 200.0, 0.7, 4),  # in awb's prose
            Detection("up", 230.5, 0.7, 5)]  # in a noise burst: nobody's
    m = match(dets, events, tolerance_s=1.5)
    rows = per_speaker([m], [Stream("s", np.zeros(16000, np.float32), events)])
    assert [r["speaker"] for r in rows] == ["flite:awb", "espeak:m3"]  # the worst recall first
    awb, m3 = rows
    assert (awb["events"], awb["hits"], awb["recall"], awb["false_alarms"]) == (2, 1, 0.5, 3)
    assert (m3["events"], m3["hits"], m3["recall"], m3["false_alarms"]) == (1, 1, 1.0, 1)
    # FA/h over each speaker's own speech: awb spoke 120.9 s, m3 60.6 s.
    assert awb["speech_min"] == 2.02 and awb["fa_per_hour"] == round(3 / (120.9 / 3600), 3)
    assert m3["speech_min"] == 1.01 and m3["fa_per_hour"] == round(1 / (60.6 / 3600), 3)
    assert sum(r["false_alarms"] for r in rows) == len(m["false_alarms"]) - 1
    # Events that name nobody: no breakdown.
    plain = check_events([{k: v for k, v in e.items() if k != "voice"} for e in raw], "s")
    assert per_speaker([match(dets, plain)], [Stream("s", np.zeros(16000, np.float32), plain)]) == []


def _fake_scored(t, P, events, seconds):
    sc = _Scored.__new__(_Scored)
    sc.streams = [Stream("s", np.zeros(int(seconds * 16000), np.float32), events)]
    sc.runs, sc.hop_ms, sc.labels, sc.kw = [(t, P)], 100.0, LABELS, KW
    sc.keyword_labels, sc.seconds, sc._smoothed = ["yes", "no"], seconds, {}
    return sc


def test_sweep_picks_the_most_recall_under_the_target_and_the_middle_of_the_tie():
    # Two keywords with posteriors 0.8 and 0.6, and a spurious 0.45 "no" on negative speech: thresholds in
    # (0.45, 0.6] catch both without the false alarm; the middle of that run is picked.
    t, P = posteriors(400, {"yes": [(10, 14, 0.8)], "no": [(100, 104, 0.6), (300, 304, 0.45)]})
    events = [Event("yes", 1.8, 2.3), Event("no", 10.8, 11.3)]
    sc = _fake_scored(t, P, events, seconds=3600.0)
    op, fig, rows = sweep(sc, 0.5, thresholds=[0.4, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7], smooth_grid=(100.0,),
                          refractory_grid=(1000.0,))
    assert (fig["hits"], fig["false_alarms"], fig["target_met"]) == (2, 0, True)
    assert op.threshold == 0.55 and [r["false_alarms"] for r in rows[:2]] == [1, 1]
    # With 1 FA/h allowed the same recall is reached; with none reachable, the fewest false alarms win.
    op1, fig1, _ = sweep(sc, 1.0, thresholds=[0.4, 0.45], smooth_grid=(100.0,), refractory_grid=(1000.0,))
    assert (fig1["hits"], fig1["false_alarms"]) == (2, 1)
    op2, fig2, _ = sweep(sc, 0.0, thresholds=[0.4, 0.45], smooth_grid=(100.0,), refractory_grid=(1000.0,))
    assert fig2["target_met"] is False and fig2["false_alarms"] == 1


def test_bad_events_and_operating_points_are_clear_errors(tmp_path):
    with pytest.raises(DataError, match="negative"):
        check_events([{"label": "yes", "start": -1, "end": 0.5}], "e.json")
    with pytest.raises(DataError, match="overlap"):
        check_events([{"label": "yes", "start": 1, "end": 2}, {"label": "no", "start": 1.5, "end": 2.5}], "e.json")
    with pytest.raises(DataError, match="'maybe', not one of the model's keywords"):
        check_events([{"label": "maybe", "start": 1, "end": 2}], "e.json", LABELS)
    with pytest.raises(DataError, match="ends"):
        check_events([{"label": "yes", "start": 2, "end": 1}], "e.json")
    with pytest.raises(DataError, match="needs 'label'"):
        check_events([{"start": 2}], "e.json")
    # Distractor speech may overlap keywords; it is not a keyword event.
    assert len(check_events([{"label": "yes", "start": 1, "end": 2}, {"label": "_unknown_", "start": 1.5, "end": 3}],
                            "e.json", LABELS)) == 2
    with pytest.raises(ConfigError, match="threshold"):
        OperatingPoint(threshold=1.5)
    with pytest.raises(ConfigError, match="smooth_ms"):
        OperatingPoint(smooth_ms=-1)
    from edgekit.features.wav import write_wav

    wav = write_wav(tmp_path / "s.wav", np.zeros(8000 * 3, np.float32), 8000, channels=1)
    (tmp_path / "s.json").write_text(json.dumps({"events": [{"label": "yes", "start": 9, "end": 9.5}]}))
    with pytest.raises(DataError, match="after the stream's end"):
        load_streams([wav], tmp_path / "s.json")
    (tmp_path / "s.json").write_text(json.dumps({"events": [{"label": "yes", "start": 1, "end": 1.5}]}))
    s = load_streams(tmp_path)[0]  # a folder: s.json beside s.wav holds its events
    assert s.audio.shape[0] == 48000 and len(s.events) == 1 and "resampled to 16000 Hz mono" in s.notes[0]
    with pytest.raises(DataError, match="No such events file"):
        load_streams([wav], tmp_path / "missing.json")


def test_per_keyword_thresholds_catch_a_quiet_keyword_without_new_false_alarms():
    from edgekit.apps.streams import per_keyword

    # "no" only reaches 0.4 but never fires on speech; a spurious "yes" reaches 0.6: one threshold can't have both.
    t, P = posteriors(400, {"yes": [(10, 14, 0.8), (300, 304, 0.6)], "no": [(100, 104, 0.4)]})
    sc = _fake_scored(t, P, [Event("yes", 1.8, 2.3), Event("no", 10.8, 11.3)], seconds=3600.0)
    op, fig, _ = sweep(sc, 0.5, thresholds=[0.65, 0.7, 0.75, 0.8], smooth_grid=(100.0,), refractory_grid=(1000.0,))
    assert (op.threshold, fig["hits"], fig["false_alarms"]) == (0.75, 1, 0)
    pk = per_keyword(sc, op)
    assert pk.thresholds == {"yes": 0.7, "no": 0.35} and sc.counts(pk) == (2, 2, 0)
