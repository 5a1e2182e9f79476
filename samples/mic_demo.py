#!/usr/bin/env python3
"""Streaming keyword spotting on the edgekit runtime (the same app as `edgekit demo mic`).

    python samples/mic_demo.py --model kws.tflite                                  # live microphone, Ctrl-C to stop
    python samples/mic_demo.py --model kws.tflite --wav stream.wav --labels stream.json   # score a recording
    python samples/mic_demo.py --url http://pi.local:8000 --wav stream.wav
    python samples/mic_demo.py --make-stream stream.wav                            # synthesize a labelled test stream
"""

import argparse
import json
import sys

from edgekit.apps.kws import THRESHOLD
from edgekit.errors import EdgekitError


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="local keyword-spotting model (.tflite, .onnx, .xml) with its edgekit metadata")
    ap.add_argument("--url", help="edgekit serve server: http://HOST:PORT[/v2/models/NAME]")
    ap.add_argument("--wav", help="stream this recording instead of the microphone")
    ap.add_argument("--labels", help="truth for --wav (JSON events): print hits, misses and false alarms")
    ap.add_argument("--threshold", type=float, default=THRESHOLD)
    ap.add_argument("--duration", type=float, help="seconds to listen to the microphone")
    ap.add_argument("--make-stream", metavar="WAV", help="write a 60-s labelled keyword stream (needs espeakng-loader)")
    a = ap.parse_args()
    try:
        if a.make_stream:
            from edgekit.apps.synth import keyword_stream, write_stream

            wav, truth = write_stream(a.make_stream, *keyword_stream(60.0, 20))
            print(f"wrote {wav} and {truth}")
            return 0
        from edgekit.apps import open_model
        from edgekit.apps.kws import KeywordSpotter, listen, load_events, print_detection, read_audio, score

        spotter = KeywordSpotter(open_model(a.model, a.url), threshold=a.threshold)
        if a.wav:
            result = spotter.run(read_audio(a.wav, spotter.sample_rate), on_detection=print_detection)
        else:
            result = listen(spotter, duration=a.duration, on_detection=print_detection,
                            on_start=lambda name: print(f"Listening on {name}... (Ctrl-C to stop)", file=sys.stderr))
        summary = {k: v for k, v in result.to_dict().items() if k != "detections"}
        if a.labels:
            s = score(result.detections, load_events(a.labels), window_s=spotter.window_s)
            summary.update({k: s[k] for k in ("keywords", "hits", "misses", "false_alarms")})
    except EdgekitError as e:
        print(f"Error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
