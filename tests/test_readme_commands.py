"""Every ``edgekit ...`` command the README shows (fenced bash blocks and inline code) names a real
command and only options that command declares, so the README cannot drift from the CLI.

This parses, it does not run them: the main job (``edgekit demo``) runs in CI's install step, the
recipes in tests/pipeline/test_shipped_recipes.py, and each command's behaviour in its own tests.
"""

import re
import shlex
from pathlib import Path

import click
import pytest

README = (Path(__file__).parents[1] / "README.md").read_text()


def _commands() -> list[str]:
    out = []
    for block in re.findall(r"```bash\n(.*?)```", README, flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            for part in re.split(r"&&|;", line.split(" # ")[0]):
                part = part.strip()
                if part.startswith("edgekit "):
                    out.append(part)
    out += [c for c in re.findall(r"`(edgekit [^`]+)`", README) if "..." not in c and "<" not in c]
    return sorted(set(out))


COMMANDS = _commands()


def _resolve(tokens: list[str]):
    from edgekit.cli import cli

    ctx = click.Context(cli)
    cmd, rest = cli, tokens
    while isinstance(cmd, click.Group) and rest and not rest[0].startswith("-"):
        sub = cmd.get_command(ctx, rest[0])
        if sub is None:
            if cmd is cli:
                raise AssertionError(f"no command {rest[0]!r}")
            break  # a group that takes arguments itself (demo's --out) or a positional
        cmd, rest = sub, rest[1:]
    return cmd, rest


def test_the_readme_shows_commands():
    assert len(COMMANDS) >= 20 and "edgekit demo" in COMMANDS


@pytest.mark.parametrize("line", COMMANDS)
def test_readme_command_uses_real_options(line):
    tokens = shlex.split(line)[1:]
    cmd, rest = _resolve(tokens)
    declared = {o for p in cmd.params for o in (*p.opts, *p.secondary_opts)} | {"--help", "-h"}
    used = [t.split("=")[0] for t in rest if t.startswith("-") and not re.fullmatch(r"-\d[\d.]*", t)]
    unknown = [u for u in used if u not in declared and not (len(u) > 2 and u[1] != "-")]
    assert not unknown, f"{line!r}: {cmd.name} has no {', '.join(unknown)}"
