#!/usr/bin/env python3
"""Camera classification demo on the edgekit runtime (the same app as `edgekit demo camera`).

    python samples/camera_demo.py --model mobilenet.tflite --source 0            # camera, window if a display exists
    python samples/camera_demo.py --model m.onnx --source clip.mp4 --headless    # JSON lines on stdout
    python samples/camera_demo.py --url http://pi.local:8000 --source 0 --save out.mp4
"""

import argparse
import json
import sys

from edgekit.apps import open_model
from edgekit.apps.camera import CameraDemo, display_available, open_source
from edgekit.errors import EdgekitError


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    who = ap.add_mutually_exclusive_group(required=True)
    who.add_argument("--model", help="local model file (.tflite, .onnx, .xml) with its edgekit metadata")
    who.add_argument("--url", help="edgekit serve server: http://HOST:PORT[/v2/models/NAME]")
    ap.add_argument("--source", default="0", help="camera index, 'picamera', video file, stream URL or image folder")
    ap.add_argument("--headless", action="store_true", help="no window: one JSON line per frame")
    ap.add_argument("--save", help="write the annotated video here (.mp4 / .avi)")
    ap.add_argument("--top-k", type=int, default=3)
    ap.add_argument("--max-frames", type=int)
    a = ap.parse_args()
    try:
        demo = CameraDemo(open_model(a.model, a.url), top_k=a.top_k)
        show = not a.headless and display_available()
        on_result = None if show else (lambda r: print(json.dumps(r.to_dict()), flush=True))
        with open_source(a.source) as src:
            summary = demo.run(src, show=show, save=a.save, max_frames=a.max_frames, on_result=on_result)
    except EdgekitError as e:
        print(f"Error: {e}", file=sys.stderr)
        return 2
    print(json.dumps({"summary": summary}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
