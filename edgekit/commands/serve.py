"""``edgekit serve``: flags → ServeConfig → edgekit.serve.serve()."""

from __future__ import annotations

import sys

import click


@click.command("serve")
@click.argument("models", nargs=-1, required=True, metavar="MODEL_OR_REPO...")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (0.0.0.0: all interfaces).")
@click.option("--port", default=8000, show_default=True, type=int, help="Port; 0 picks a free one.")
@click.option("--device", default="cpu", show_default=True, help="cpu, gpu, npu, auto or a backend-specific device.")
@click.option("--threads", type=int, default=None, help="Intra-op threads per model (default: the backend's).")
@click.option("--max-batch-size", default=8, show_default=True, type=int,
              help="Rows per run for models with a dynamic batch dimension (1: no batching).")
@click.option("--max-queue-delay-ms", default=0.0, show_default=True, type=float,
              help="How long a batch may wait to fill (0: batch only what is already queued).")
@click.option("--max-queue", default=64, show_default=True, type=int,
              help="Requests waiting per model version before the server answers 503.")
@click.option("--inline-max-ms", default=5.0, show_default=True, type=float,
              help="A request that finds the server otherwise idle runs its model on the event loop, saving the "
                   "hand-off to the model thread (~0.4 ms), if the model lately ran within this; health checks "
                   "then wait that long at most. 0: always hand off.")
@click.option("--timeout-ms", default=10000.0, show_default=True, type=float, help="Per-request limit (queue + run); 504 after.")
@click.option("--max-body-mb", default=64.0, show_default=True, type=float, help="Request body limit; 413 above.")
@click.option("--max-json-mb", default=8.0, show_default=True, type=float,
              help="Limit for a JSON (not binary-extension) infer body; 413 above. Big tensors: send them binary.")
@click.option("--max-image-mp", default=25.0, show_default=True, type=float,
              help="Classify: decoded image size limit in megapixels, checked before decoding; 413 above.")
@click.option("--max-header-kb", default=32.0, show_default=True, type=float, help="Request line + headers limit; 431 above.")
@click.option("--max-connections", default=1024, show_default=True, type=int,
              help="Open connections. When full, the one idle or slowest to send its headers is closed; "
                   "503 when all are busy with requests.")
@click.option("--header-timeout-s", default=10.0, show_default=True, type=float,
              help="A connection must send its request line and headers within this; 408 after.")
@click.option("--body-timeout-s", default=60.0, show_default=True, type=float,
              help="... and then the whole body within this, pausing no longer than --header-timeout-s; 408 after.")
@click.option("--min-body-rate-kb", default=1.0, show_default=True, type=float,
              help="... and, 2 s after the headers, average at least this many KiB/s (0: no rate check); 408 below.")
@click.option("--keep-alive-s", default=5.0, show_default=True, type=float, help="Idle keep-alive connections close after this.")
@click.option("--drain-timeout-s", default=30.0, show_default=True, type=float,
              help="On SIGTERM/SIGINT, how long in-flight requests may take to finish.")
@click.option("--versions", type=click.Choice(["all", "latest"]), default="all", show_default=True,
              help="Which numbered versions of a versioned model folder to load.")
@click.option("--access-log", is_flag=True, help="Log every request.")
@click.option("--log-level", type=click.Choice(["critical", "error", "warning", "info", "debug"]), default="warning",
              show_default=True)
def serve(models, **opts):
    """Serve models over HTTP (KServe v2 / Open Inference Protocol).

    MODEL_OR_REPO: model files (.tflite, .onnx, OpenVINO .xml), NAME=PATH, a model folder with
    numbered versions (NAME/1/model.tflite), or a repository folder with one model per subfolder.
    Prints "ready <url>" once it accepts requests; health check: GET <url>/v2/health/ready.
    """
    from ..serve import ServeConfig
    from ..serve.server import serve as run

    cfg = ServeConfig(**opts)

    def ready(url, names):
        click.echo(f"edgekit serve: ready {url} (models: {', '.join(names)}; health: {url}/v2/health/ready)")
        sys.stdout.flush()  # a supervisor or test may be waiting for this line on a pipe

    run(list(models), cfg, on_ready=ready)
