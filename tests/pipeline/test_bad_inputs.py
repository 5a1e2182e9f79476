"""Bad recipe input is refused before any work, in one line, with what was received (issue 17, items 6-7),
and a damaged cached step is run again instead of being reused."""

import json
import time

import pytest

from edgekit.errors import ConfigError

from .conftest import BASE, write_recipe


def _one_clean_line(proc):
    assert proc.returncode == 2, proc.stderr[-1500:]
    assert "Traceback" not in proc.stderr
    lines = [l for l in proc.stderr.splitlines() if l.startswith("Error:")]
    assert len(lines) == 1, proc.stderr
    return lines[0]


@pytest.mark.parametrize("edit,message", [
    ("model: {name: mobilenet_v2, options: {alpha: abc}}",
     "model.options.alpha must be a float like its default 0.35; received 'abc'"),
    ("model: {name: kwt, options: {width: 3}}", "model.options: unknown option 'width'. Options: dim, depth"),
    ("data: {name: digits, options: {bogus: 1}}", "data.options: unknown option 'bogus'. Options: seed"),
    ("data: {name: keywords, options: {reps: many}}", "data.options.reps must be a int like its default 5"),
])
def test_dry_run_checks_model_and_data_options(cli, tmp_path, edit, message):
    key = edit.split(":")[0]
    text = "\n".join(l for l in BASE.splitlines() if not l.startswith(key + ":")) + "\n" + edit + "\n"
    p = write_recipe(tmp_path, text)
    line = _one_clean_line(cli("run", str(p), "--dry-run", "--out", str(tmp_path / "o")))
    assert message in line
    assert not (tmp_path / "o").exists()


def test_dry_run_refuses_an_out_that_is_a_file(cli, tmp_path):
    p = write_recipe(tmp_path, BASE)
    f = tmp_path / "taken"
    f.write_text("x")
    line = _one_clean_line(cli("run", str(p), "--dry-run", "--out", str(f)))
    assert "--out" in line and f"{f}' is a file" in line
    line = _one_clean_line(cli("run", str(p), "--dry-run", "--out", str(f / "sub")))
    assert "--out" in line and str(f) in line and "is a file" in line
    assert f.read_text() == "x"


def test_a_recipe_that_is_not_utf8_is_one_line(cli, tmp_path):
    p = tmp_path / "latin1.yaml"
    p.write_bytes(BASE.replace("smallest", "plus petite \xe9tape").encode("latin-1"))
    line = _one_clean_line(cli("run", str(p), "--dry-run"))
    assert f"Recipe {p} is not UTF-8 text: byte 0xe9 at offset" in line


def test_compress_rejects_a_negative_max_drop_before_any_work(cli, tmp_path):
    t0 = time.time()
    line = _one_clean_line(cli("compress", "no-such.keras", "-d", "digits", "--out", str(tmp_path / "o"),
                               "--quantize", "int8", "--max-drop", "-1"))
    # The schema's check runs while parsing: before the model file is even looked at, and in well under the
    # time it takes to import TensorFlow (5 s+ here).
    assert line == "Error: --max-drop must be >= 0; received -1.0"
    assert time.time() - t0 < 20 and not (tmp_path / "o").exists()


def test_library_compress_validates_the_gate_first(tmp_path):
    from edgekit.compress import ExportConfig, GateConfig, compress

    with pytest.raises(ConfigError, match="Gate max_drop must be >= 0; received -1"):
        compress(str(tmp_path / "missing.keras"), "digits", tmp_path / "o",
                 export=ExportConfig(gate=GateConfig(max_drop=-1)))


def test_a_damaged_cached_step_runs_again(tmp_path):
    from edgekit.runcache import Run

    calls = []

    def step(folder):
        calls.append(1)
        (folder / "model.bin").write_bytes(b"weights" * 100)
        return {"model": "model.bin"}

    said = []
    rec = Run(None, tmp_path, say=said.append).step("export", {"a": 1}, {}, step)
    assert not rec.cached and len(calls) == 1
    assert Run(None, tmp_path).step("export", {"a": 1}, {}, step).cached and len(calls) == 1
    done = json.loads((rec.folder / "step.json").read_text())
    assert set(done["files"]) == {"model.bin"}

    (rec.folder / "model.bin").write_bytes(b"weights" * 99 + b"garbage")  # bit rot, a bad copy, an edit
    again = Run(None, tmp_path, say=said.append).step("export", {"a": 1}, {}, step)
    assert not again.cached and len(calls) == 2
    assert "cached files changed or damaged since the step ran (model.bin); ran it again" in again.note
    assert again.row()["note"] == again.note and any("ran it again" in s for s in said)
    assert (again.folder / "model.bin").read_bytes() == b"weights" * 100
    assert Run(None, tmp_path).step("export", {"a": 1}, {}, step).cached and len(calls) == 2

    (again.folder / "step.json").write_text("{not json")  # a damaged marker is not a finished step either
    assert not Run(None, tmp_path).step("export", {"a": 1}, {}, step).cached and len(calls) == 3


# --- hostile input (issue 23): each refused in one line, exit 2, nothing written -----------------------------
def _refused(invoke_cli, argv, where):
    code, out, err = invoke_cli(argv)
    assert "Traceback" not in err + out, err
    assert code == 2, (code, out, err)
    lines = [l for l in err.splitlines() if l.startswith("Error:")]
    assert len(lines) == 1 and err.strip().splitlines()[-1] == lines[0], err
    assert not any(where.iterdir()), list(where.iterdir())
    return lines[0]


@pytest.mark.parametrize("name", ["../../escaped", "/abs/path", "..", ".hidden", "a/b", ""])
def test_a_recipe_name_is_one_safe_path_component(invoke_cli, tmp_path, monkeypatch, name):
    """``name`` becomes runs/<name>: ../ or an absolute path wrote outside the runs folder, then steps._publish
    tracebacked. Refused at validation, with or without --dry-run and from the file or --set alike."""
    work = tmp_path / "a" / "b" / "work"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    p = write_recipe(tmp_path / "a", BASE)
    line = _refused(invoke_cli, ["run", str(p), "--set", f"name={name!r}" if name else "name=''"], work)
    assert "name:" in line and "plain name" in line
    assert sorted(x.name for x in (tmp_path / "a").iterdir()) == ["b", "r.yaml"]
    q = write_recipe(tmp_path / "a", BASE.replace("name: tiny", f"name: {name!r}"), "q.yaml")
    assert "plain name" in _refused(invoke_cli, ["run", str(q), "--dry-run"], work)


@pytest.mark.parametrize("item,message", [
    ("train.epochs=[", "the value is not plain YAML"),
    ("train.epochs=!!python/object:os.system x", "the value is not plain YAML"),
    ("bench.threads=0", "bench.threads: Bench threads must be >= 1; received 0"),
    ("bench.runs=-1", "bench.runs: Bench runs must be >= 1; received -1"),
    ("bench.warmup=x", "bench.warmup: Bench warmup must be an integer; received 'x'"),
    ("model.options={bogus: 1}", "model.options: Model 'ds_cnn_s' has no option 'bogus'"),
    ("data.name=/etc", "data.name: /etc is not a dataset folder"),
    ("gates.max_drop=.inf", "gates.max_drop"),
])
def test_set_and_dry_run_refuse_bad_values(invoke_cli, tmp_path, monkeypatch, item, message):
    monkeypatch.chdir(tmp_path)
    p = write_recipe(tmp_path, BASE)
    (tmp_path / "w").mkdir()
    line = _refused(invoke_cli, ["run", str(p), "--dry-run", "--out", str(tmp_path / "w" / "o"), "--set", item],
                    tmp_path / "w")
    assert message in line, line


def test_bench_typo_in_a_recipe_file_is_an_error(invoke_cli, tmp_path):
    p = write_recipe(tmp_path, BASE.replace("bench: {threads: 1,", "bench: {thread: 1,"))
    (tmp_path / "w").mkdir()
    line = _refused(invoke_cli, ["run", str(p), "--dry-run", "--out", str(tmp_path / "w" / "o")], tmp_path / "w")
    assert "bench.thread: unknown field (allowed: runs, threads, warmup)" in line


def test_a_deeply_nested_recipe_is_a_clean_error(invoke_cli, tmp_path):
    p = tmp_path / "deep.yaml"
    p.write_text("name: deep\ndata: " + "[" * 20000 + "]" * 20000 + "\n")
    (tmp_path / "w").mkdir()
    line = _refused(invoke_cli, ["run", str(p), "--dry-run", "--out", str(tmp_path / "w" / "o")], tmp_path / "w")
    assert "nested too deeply" in line
