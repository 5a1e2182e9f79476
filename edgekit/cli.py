"""The ``edgekit`` command. Click only: each command lives in ``edgekit/commands/<name>.py``,
is imported only when invoked (``--help`` stays fast and TensorFlow-free), turns flags into
one library call and prints. One place (``main``) turns EdgekitError into a clean line, exit 2.
"""

from __future__ import annotations

import importlib
import importlib.util
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
def cli():
    """edgekit: compact neural networks from data to edge devices.

    Train, compress (prune, distill, int8), export (TFLite, ONNX, OpenVINO IR), benchmark,
    serve and deploy. The runtime side never imports TensorFlow.
    """


def main(argv=None) -> None:
    # TensorFlow, when a build-side command imports it, logs CPU-feature notices on stderr.
    import os

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
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
