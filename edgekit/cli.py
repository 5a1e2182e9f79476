"""The ``edgekit`` command. Click only: each command lives in ``edgekit/commands/<name>.py``,
is imported only when invoked (``--help`` stays fast and TensorFlow-free), turns flags into
one library call and prints. One place (``main``) turns EdgekitError into a clean line, exit 2.
"""

from __future__ import annotations

import importlib
import importlib.util
import re
import sys

import click

from . import __version__
from .errors import EdgekitError

# name -> (module, attribute, one-line help shown without importing the module)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "export": ("edgekit.commands.export", "export", "Export a Keras model to TFLite, ONNX and OpenVINO IR, verified."),
    "info": ("edgekit.commands.info", "info", "Show a model's format, inputs, outputs, quantization and metadata."),
    "devices": ("edgekit.commands.devices", "devices", "List installed backends and the devices each one sees."),
    "bench": ("edgekit.commands.bench", "bench", "Benchmark models: latency percentiles, throughput, memory."),
    "zoo": ("edgekit.commands.zoo", "zoo", "The model zoo: list models with parameters and MACs."),
    "data": ("edgekit.commands.data", "data", "Datasets: list, inspect and prepare."),
    "train": ("edgekit.commands.train", "train", "Train a zoo model on a dataset."),
    "eval": ("edgekit.commands.eval", "eval_", "Evaluate a model of any format on a dataset."),
    "calibrate": ("edgekit.commands.streams", "calibrate", "Calibrate a keyword spotter's operating point on streams."),
    "compress": ("edgekit.commands.compress", "compress", "Prune, distill and quantize, gated on accuracy."),
    "run": ("edgekit.commands.run", "run", "Run a recipe (YAML pipeline) end to end."),
    "demo": ("edgekit.commands.demo", "demo", "Run the built-in demo, or the camera / microphone demo apps."),
    "serve": ("edgekit.commands.serve", "serve", "Serve models over HTTP (KServe v2 / Open Inference Protocol)."),
    "bundle": ("edgekit.commands.deploy", "bundle", "Build a deployable bundle for a device profile."),
    "deploy": ("edgekit.commands.deploy", "deploy", "Deploy a bundle to devices over SSH, with smoke test and rollback."),
    "status": ("edgekit.commands.deploy", "status", "Show what a device is running and how it is doing."),
    "doctor": ("edgekit.commands.deploy", "doctor", "Check a machine against a device profile."),
}


def _present(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


class LazyGroup(click.Group):
    def list_commands(self, ctx):
        return sorted(n for n, (m, _, _) in COMMANDS.items() if _present(m))

    def get_command(self, ctx, name):
        if name not in COMMANDS or not _present(COMMANDS[name][0]):
            return None
        module, attr, _ = COMMANDS[name]
        return getattr(importlib.import_module(module), attr)

    def format_commands(self, ctx, formatter):
        rows = [(n, COMMANDS[n][2]) for n in self.list_commands(ctx)]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="edgekit")
@click.option("--verbose", is_flag=True, help="Show TensorFlow's native start-up log lines (hidden by default).")
def cli(verbose):
    """edgekit: compact neural networks from data to edge devices.

    Train, compress (prune, distill, int8), export (TFLite, ONNX, OpenVINO IR), benchmark,
    serve and deploy. The runtime side never imports TensorFlow.
    """


# TensorFlow's C++ start-up lines (absl / TF logging before Python logging exists; TF_CPP_MIN_LOG_LEVEL does
# not reach them): "WARNING: All log messages before absl::InitializeLog() ...", "I0000 00:00:... port.cc:153]
# oneDNN custom operations are on ...", the cpu_feature_guard notice and its second line; and, once per epoch of
# every Keras training on tf.data, an error-level line that is not an error: "E0000 ... node_def_util.cc:682]
# NodeDef mentions attribute use_unbounded_threadpool which is not in the op definition ... Unknown attributes
# will be ignored" (a graph attribute newer than the op registry; TensorFlow ignores it). Other E lines stay.
NATIVE_NOISE = re.compile(rb"^(WARNING: All log messages before absl::InitializeLog\(\)|"
                          rb"[IW]\d{4} \d\d:\d\d:\d+\.\d+ +\d+ [\w.]+:\d+\] |"
                          rb"E\d{4} \d\d:\d\d:\d+\.\d+ +\d+ node_def_util\.cc:\d+\] NodeDef mentions attribute "
                          rb"use_unbounded_threadpool which is not in the op definition|"
                          rb"To enable the following instructions: .*rebuild TensorFlow|"
                          # LiteRT's note on every interpreter, and the TFLite converter's on every int8 conversion
                          rb"INFO: Created TensorFlow Lite XNNPACK delegate for CPU\.$|"
                          rb"fully_quantize: \d+, inference_type: \d+, input_inference_type: \w+, "
                          rb"output_inference_type: \w+$)")


def quiet_python_logs() -> None:
    """The Python-side chatter of the build tools, hidden unless --verbose: NNCF's INFO lines (one per ignored node
    and per quantizer not added), TensorFlow's WARNING lines (tf.function retracing during calibration), and
    tf.lite.Interpreter's deprecation notice (TensorFlow's quantization debugger builds one). Filters, not levels:
    NNCF sets its logger's level when it is imported."""
    import logging
    import warnings

    logging.getLogger("nncf").addFilter(lambda r: r.levelno >= logging.WARNING)
    logging.getLogger("tensorflow").addFilter(lambda r: r.levelno >= logging.ERROR)
    warnings.filterwarnings("ignore", message=r"\s*Warning: tf\.lite\.Interpreter is deprecated", category=UserWarning)


class NativeStderrFilter:
    """fd 2 through a pipe whose reader drops NATIVE_NOISE lines and passes everything else on (child
    processes included). Only for the real entry point: it swaps the process's fd 2."""

    def __init__(self):
        import os
        import threading

        self.saved = os.dup(2)
        r, w = os.pipe()
        os.dup2(w, 2)
        os.close(w)
        self.thread = threading.Thread(target=self._pump, args=(r,), daemon=True)
        self.thread.start()

    def _pump(self, r):
        import os

        buf = b""
        with open(r, "rb", buffering=0) as f:
            while True:
                chunk = f.read(65536)
                if not chunk:
                    break
                buf += chunk
                *lines, buf = buf.split(b"\n")
                out = b"".join(ln + b"\n" for ln in lines if not NATIVE_NOISE.match(ln))
                if out:
                    os.write(self.saved, out)
        if buf and not NATIVE_NOISE.match(buf):
            os.write(self.saved, buf)

    def close(self):
        import os

        try:
            sys.stderr.flush()
        except (OSError, ValueError):
            pass
        os.dup2(self.saved, 2)  # the pipe's last writer here is gone: the reader drains and stops
        self.thread.join(2.0)


def main(argv=None) -> None:
    import os

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    quiet = argv is None and "--verbose" not in sys.argv[1:] and not os.environ.get("EDGEKIT_VERBOSE")
    filt = NativeStderrFilter() if quiet else None
    if quiet:
        quiet_python_logs()
    try:
        _main(argv)
    finally:
        if filt is not None:
            filt.close()


def _main(argv=None) -> None:
    try:
        rv = cli.main(args=argv, prog_name="edgekit", standalone_mode=False)
    except EdgekitError as e:
        click.echo(f"Error: {e}", err=True)
        sys.exit(e.exit_code)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(130)
    except KeyboardInterrupt:
        click.echo("Interrupted.", err=True)
        sys.exit(130)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    sys.exit(rv if isinstance(rv, int) else 0)


if __name__ == "__main__":  # pragma: no cover
    main()
