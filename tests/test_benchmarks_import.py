"""Every ``from edgekit... import ...`` in benchmarks/ names a module and attribute that exist.

Benchmarks are not run by the default suite (they train for minutes to hours), so a rename inside
edgekit would otherwise break them silently (kws_sources.py still imported the old edgekit.report).
"""

import ast
import importlib
from pathlib import Path

import pytest

BENCH = Path(__file__).parents[1] / "benchmarks"
IMPORTS = sorted({(p.name, node.module, alias.name)
                  for p in BENCH.glob("*.py")
                  for node in ast.walk(ast.parse(p.read_text()))
                  if isinstance(node, ast.ImportFrom) and node.module and node.level == 0
                  and node.module.split(".")[0] == "edgekit"
                  for alias in node.names})


def test_benchmarks_import_edgekit():
    assert len(IMPORTS) > 20  # the benchmarks do import edgekit; an empty list would test nothing


@pytest.mark.parametrize("script,module,name", IMPORTS, ids=[f"{s}:{m}.{n}" for s, m, n in IMPORTS])
def test_benchmark_import_resolves(script, module, name):
    mod = importlib.import_module(module)
    assert hasattr(mod, name) or importlib.util.find_spec(f"{module}.{name}") is not None, \
        f"benchmarks/{script}: `from {module} import {name}`: {module} has no {name}"
