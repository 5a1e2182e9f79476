"""Every loader on small local data; bad input gives a DataError naming the file."""

import hashlib
import subprocess
import sys

import numpy as np
import pytest

from edgekit.data import load_dataset
from edgekit.data.builtin import read_idx
from edgekit.data.download import fetch
from edgekit.errors import ConfigError, DataError


def _disjoint_and_complete(ds, total):
    sizes = {s: len(y) for s, (_, y) in ds.splits.items()}
    assert sum(sizes.values()) == total
    return sizes


def test_digits():
    ds = load_dataset("digits")
    assert ds.task == "image-classification" and ds.labels == [str(i) for i in range(10)]
    assert ds.input_shape == (8, 8, 1)
    sizes = _disjoint_and_complete(ds, 1797)
    assert sizes["test"] == pytest.approx(0.2 * 1797, abs=10)
    x, y = ds.split("train")
    assert 0.0 <= x.min() and x.max() <= 1.0 and x.dtype == np.float32
    assert min(ds.counts()["test"]) >= 30  # stratified: every class in the test split
    assert ds.preprocessing["scale"] == pytest.approx(1 / 16)
    # same seed, same split; another seed, another split
    assert np.array_equal(load_dataset("digits").split("test")[1], ds.split("test")[1])
    assert not np.array_equal(load_dataset("digits", seed=1).split("test")[0], ds.split("test")[0])


def test_mnist_5k():
    ds = load_dataset("mnist-5k")
    assert ds.input_shape == (28, 28, 1)
    _disjoint_and_complete(ds, 5000)
    assert ds.counts()["test"] == [100] * 10


def test_limit():
    ds = load_dataset("digits", limit=50)
    assert all(len(y) == 50 for _, y in ds.splits.values())


def test_unknown_name_lists_choices():
    with pytest.raises(ConfigError, match="Unknown dataset 'mnistt'. Available: .*digits.*keywords"):
        load_dataset("mnistt")


def test_image_folder(image_folder):
    ds = load_dataset(image_folder)
    assert ds.labels == ["circle", "square", "triangle"]
    assert ds.input_shape == (12, 12, 1)
    _disjoint_and_complete(ds, 30)
    # classes differ in brightness: the pixels really were read
    x, y = ds.split("train")
    assert x[y == 0].mean() < x[y == 2].mean()
    ds2 = load_dataset(image_folder, size=(8, 10), channels=3)
    assert ds2.input_shape == (8, 10, 3)


def test_image_folder_problems(image_folder, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match=f"{empty}.*empty"):
        load_dataset(empty, kind="images")
    (image_folder / "hexagon").mkdir()
    with pytest.raises(DataError, match="hexagon"):
        load_dataset(image_folder)
    (image_folder / "hexagon").rmdir()
    bad = image_folder / "circle" / "broken.png"
    bad.write_bytes(b"not a png")
    with pytest.raises(DataError, match="broken.png"):
        load_dataset(image_folder)
    bad.unlink()
    from PIL import Image

    Image.fromarray(np.zeros((5, 7), np.uint8)).save(image_folder / "square" / "small.png")
    with pytest.raises(DataError, match="different sizes"):
        load_dataset(image_folder)


def test_speech_commands_folder_all_words(speech_folder):
    ds = load_dataset(speech_folder)
    assert ds.task == "audio-classification"
    assert ds.labels == ["cat", "dog", "no", "yes"]
    assert ds.input_shape == (49, 10)
    # validation_list / testing_list honoured: one file per word in each
    assert ds.counts()["val"] == [1, 1, 1, 1] and ds.counts()["test"] == [1, 1, 1, 1]
    assert ds.counts()["train"] == [12, 12, 12, 15]  # 3 augmented copies; the resampled stereo file joined "yes"
    assert load_dataset(speech_folder, augment=False).counts()["train"] == [4, 4, 4, 5]
    assert ds.preprocessing["frontend"]["kind"] == "mfcc"


def test_speech_commands_folder_keyword_task(speech_folder):
    ds = load_dataset(speech_folder, keywords="yes,no")
    assert ds.labels == ["_silence_", "_unknown_", "yes", "no"]
    counts = ds.counts()["train"]
    assert counts[0] > 0 and counts[1] > 0  # silence from _background_noise_, unknown from cat/dog
    # features of different tones differ (the audio was really read)
    x, y = ds.split("train")
    assert np.abs(x[y == 2].mean(0) - x[y == 3].mean(0)).max() > 1.0


def test_speech_commands_wrong_rate_strict(speech_folder):
    with pytest.raises(DataError, match="odd_nohash_0.wav.*(channels|Hz)"):
        load_dataset(speech_folder, resample=False)


def test_speech_commands_missing_keyword(speech_folder):
    with pytest.raises(DataError, match="stop"):
        load_dataset(speech_folder, keywords="yes,stop")


def test_unreadable_wav(speech_folder):
    (speech_folder / "no" / "junk.wav").write_bytes(b"RIFF....WAVEjunk")
    with pytest.raises(DataError, match="junk.wav"):
        load_dataset(speech_folder)


def test_csv_text(text_csv):
    ds = load_dataset(text_csv)
    assert ds.task == "text-classification" and ds.labels == ["neg", "pos"]
    _disjoint_and_complete(ds, 80)
    x, _ = ds.split("train")
    assert x.dtype == np.int32 and x.shape[1] == ds.preprocessing["max_length"]
    vocab = ds.preprocessing["vocab"]
    assert "great" in vocab and ds.preprocessing["vocab_size"] == len(vocab) + 2
    assert (x[:, 0] >= 2).all()  # first token of every row is in the vocabulary


def test_csv_split_column(tmp_path):
    p = tmp_path / "s.csv"
    p.write_text("text,label,split\na b,x,train\nc d,y,train\ne f,x,test\ng h,y,val\n")
    ds = load_dataset(p)
    assert {s: len(y) for s, (_, y) in ds.splits.items()} == {"train": 2, "val": 1, "test": 1}


def test_csv_problems(tmp_path):
    p = tmp_path / "wrong.csv"
    p.write_text("sentence,category\nhello,a\n")
    with pytest.raises(DataError, match=r"wrong.csv lacks column\(s\) text, label"):
        load_dataset(p)
    p.write_text("text,label\n")
    with pytest.raises(DataError, match="no rows"):
        load_dataset(p)


def test_fashion_mnist_local_idx(fashion_folder):
    ds = load_dataset("fashion-mnist", path=str(fashion_folder))
    assert ds.input_shape == (28, 28, 1) and len(ds.labels) == 10
    assert len(ds.split("test")[1]) == 20 and len(ds.split("train")[1]) + len(ds.split("val")[1]) == 60


def test_idx_truncated(fashion_folder, tmp_path):
    import gzip

    data = gzip.open(fashion_folder / "t10k-images-idx3-ubyte.gz").read()
    bad = tmp_path / "cut.gz"
    with gzip.open(bad, "wb") as f:
        f.write(data[:1000])
    with pytest.raises(DataError, match="cut.gz.*truncated"):
        read_idx(bad)


def test_cifar10_local(cifar_folder):
    ds = load_dataset("cifar-10", path=str(cifar_folder))
    assert ds.input_shape == (32, 32, 3) and ds.labels[0] == "airplane"
    assert len(ds.split("test")[1]) == 20


def test_fetch_verifies_checksum(tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(b"edgekit" * 100)
    good = "sha256:" + hashlib.sha256(src.read_bytes()).hexdigest()
    dest = fetch(src.as_uri(), tmp_path / "cache" / "a.bin", checksum=good, quiet=True)
    assert dest.read_bytes() == src.read_bytes()
    with pytest.raises(DataError, match="Checksum mismatch"):
        fetch(src.as_uri(), tmp_path / "cache" / "b.bin", checksum="md5:" + "0" * 32, quiet=True)
    assert not (tmp_path / "cache" / "b.bin").exists()
    assert not list((tmp_path / "cache").glob("*.partial"))


def test_cli_data_info_and_errors(text_csv, tmp_path):
    r = subprocess.run([sys.executable, "-m", "edgekit.cli", "data", "info", str(text_csv), "--json", "-"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert '"text-classification"' in r.stdout
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    r = subprocess.run([sys.executable, "-m", "edgekit.cli", "data", "info", str(bad)], capture_output=True, text=True)
    assert r.returncode == 2 and "bad.csv" in r.stderr and "Traceback" not in r.stderr
