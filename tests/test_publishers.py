"""data=mnist|fashion_mnist|kmnist|cifar10|cifar100: the publishers' files parsed exactly,
official test split, validation carved from training by seed, per-channel statistics,
checksummed download from a local server, and the one-line errors."""

import gzip
import hashlib
import http.server
import threading
from functools import partial

import numpy as np
import pytest
import torch
from publisher_files import MNIST_NAMES, write_cifar10, write_cifar100, write_mnist

from reglab import instantiate
from reglab.config import compose
from reglab.data.idx import DataFileError, read_idx


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    written = {"mnist": write_mnist(root / "mnist"), "kmnist": write_mnist(root / "kmnist", seed=3)}
    written["fashion_mnist"] = write_mnist(root / "fashion_mnist", seed=4)
    written["cifar10"] = write_cifar10(root / "cifar10")
    written["cifar100"] = write_cifar100(root / "cifar100")
    return root, written


def prepared(root, name, *overrides):
    args = [f"data={name}", f"data.root={root}", "data.download=false", *overrides]
    return instantiate(compose(args, output_dir="unused").data).prepare()


def raw_rows(dm, split):
    """A split's rows back in pixel units (undoing the standardization)."""
    x = dm.splits[split][0].flatten(1).double()
    return (x * dm.feature_std.double() + dm.feature_mean.double()).round().to(torch.uint8)


@pytest.mark.parametrize(
    ("name", "shape"), [("mnist", (1, 28, 28)), ("kmnist", (1, 28, 28)), ("cifar10", (3, 32, 32))]
)
def test_pixels_and_labels_round_trip(root, name, shape):
    root, written = root
    arrays = written[name]
    dm = prepared(root, name, "data.val_fraction=0.5")
    assert dm.image_shape == shape and dm.example_shape == shape
    # the test split is the publisher's, in its order
    flat = arrays["tx"].reshape(len(arrays["tx"]), -1)
    assert torch.equal(raw_rows(dm, "test"), torch.from_numpy(flat))
    assert torch.equal(dm.splits["test"][1], torch.as_tensor(arrays["ty"], dtype=torch.int64))
    # train + val are exactly the training file's rows, each with its own label
    rows = torch.cat([raw_rows(dm, "train"), raw_rows(dm, "val")])
    labels = torch.cat([dm.splits["train"][1], dm.splits["val"][1]])
    source = arrays["x"].reshape(len(arrays["x"]), -1)
    order = [np.flatnonzero((source == r).all(1))[0] for r in rows.numpy()]
    assert sorted(order) == list(range(len(source)))
    assert labels.tolist() == np.asarray(arrays["y"])[order].tolist()


def test_validation_is_a_seeded_fraction_of_the_training_file(root):
    root, _ = root
    a, b = (
        prepared(root, "mnist", "data.val_fraction=0.5"),
        prepared(root, "mnist", "data.val_fraction=0.5", "seed=1"),
    )
    assert len(a.splits["val"][0]) == 30 and len(a.splits["train"][0]) == 30
    assert len(a.splits["test"][0]) == 20
    again = prepared(root, "mnist", "data.val_fraction=0.5")
    assert torch.equal(a.splits["val"][0], again.splits["val"][0])
    assert not torch.equal(a.splits["val"][0][:5], b.splits["val"][0][:5])


def test_channel_statistics_are_the_training_splits(root):
    root, _ = root
    dm = prepared(root, "cifar10", "data.val_fraction=0.25")
    pixels = raw_rows(dm, "train").double().numpy().reshape(-1, 3, 32 * 32)
    mean = pixels.mean(axis=(0, 2))
    std = pixels.std(axis=(0, 2))  # population std, as the standardization uses
    per_channel = dm.feature_mean.view(3, -1), dm.feature_std.view(3, -1)
    np.testing.assert_allclose(per_channel[0][:, 0], mean, rtol=1e-6)
    np.testing.assert_allclose(per_channel[1][:, 0], std, rtol=1e-6)
    assert (per_channel[0] == per_channel[0][:, :1]).all()  # one value per channel


def test_cifar100_fine_and_coarse_labels_from_the_unpacked_folder(root):
    root, written = root
    fine = prepared(root, "cifar100", "data.val_fraction=0.2")
    assert fine.classes == [f"fine{i}" for i in range(5)]
    assert fine.splits["test"][1].tolist() == written["cifar100"]["ty"].tolist()
    coarse = prepared(root, "cifar100", "data.val_fraction=0.2", "data.source.labels=coarse")
    assert coarse.splits["test"][1].tolist() == (written["cifar100"]["ty"] // 3).tolist()
    assert coarse.classes == ["coarse0", "coarse1"]


def test_a_truncated_gz_is_an_error_naming_the_file(tmp_path):
    data = (tmp_path / "mnist" / MNIST_NAMES[0]).parent
    write_mnist(data)
    path = data / MNIST_NAMES[0]
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(DataFileError, match=f"{path}.*cannot be read"):
        read_idx(path)
    short = tmp_path / "short.gz"  # a whole gzip stream, but fewer values than the header says
    short.write_bytes(gzip.compress(bytes([0, 0, 8, 1, 0, 0, 0, 9]) + b"abc"))
    with pytest.raises(DataFileError, match="cut short"):
        read_idx(short)


class Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep the test output clean
        pass


@pytest.fixture
def server(tmp_path):
    """An HTTP server on 127.0.0.1 serving tmp_path/served; yields (url, folder)."""
    served = tmp_path / "served"
    served.mkdir()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(Quiet, directory=served))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/", served
    httpd.shutdown()


def download_overrides(tmp_path, url, checksums):
    files = ",".join(f"{name}:{md5}" for name, md5 in checksums.items())
    return [
        "data=mnist",
        f"data.root={tmp_path / 'root'}",
        f"data.source.mirrors=[{url}]",
        f"data.source.files={{{files}}}",
        "data.val_fraction=0.5",
    ]


def test_download_checks_the_published_checksums(tmp_path, server):
    url, served = server
    arrays = write_mnist(served)
    md5s = {n: hashlib.md5((served / n).read_bytes()).hexdigest() for n in MNIST_NAMES}
    dm = instantiate(compose(download_overrides(tmp_path, url, md5s), output_dir="x").data)
    assert torch.equal(raw_rows(dm.prepare(), "test"), torch.from_numpy(arrays["tx"]).flatten(1))
    assert sorted(p.name for p in (tmp_path / "root" / "mnist").iterdir()) == sorted(MNIST_NAMES)

    wrong = {**md5s, MNIST_NAMES[2]: "0" * 32}
    other = tmp_path / "other"
    args = [*download_overrides(other, url, wrong)]
    with pytest.raises(DataFileError, match=f"{MNIST_NAMES[2]}.*MD5 is .* not the published 0+"):
        instantiate(compose(args, output_dir="x").data).prepare()
    assert not (other / "root" / "mnist" / MNIST_NAMES[2]).exists()  # deleted
    assert not list((other / "root" / "mnist").glob("*.part"))


def test_offline_the_error_names_files_folder_urls_and_what_to_do(tmp_path):
    folder = tmp_path / "root" / "mnist"
    args = download_overrides(tmp_path, "http://127.0.0.1:9/", dict.fromkeys(MNIST_NAMES, "0"))
    with pytest.raises(DataFileError) as err:
        instantiate(compose(args, output_dir="x").data).prepare()
    message = str(err.value)
    assert "\n" not in message
    for part in (*MNIST_NAMES, str(folder), "http://127.0.0.1:9/", "copy them into"):
        assert part in message


@pytest.mark.parametrize(
    "overrides",
    [
        ["data=mnist", "model=cnn", "model.channels=[4]", "model.hidden_sizes=[8]"],
        ["data=fashion_mnist", "regularizer=l2"],
        ["data=kmnist", "model.dropout.hidden=0.5", "inference=mc", "inference.samples=4"],
        ["data=cifar10", "augmentation=crop_flip", "model=cnn", "model.channels=[4]"],
        ["data=cifar100", "ensemble=bagging", "ensemble.members=2"],
    ],
    ids=lambda o: o[0],
)
def test_each_data_set_trains_end_to_end(root, train_api, overrides):
    root, _ = root
    common = [f"data.root={root}", "data.download=false", "data.val_fraction=0.5"]
    quick = ["trainer.max_epochs=1", "model.hidden_sizes=[8]", "logger=none"]
    quick += ["callbacks.progress_bar=null", "callbacks.weight_histograms=null"]
    metrics, run_dir = train_api(*overrides, *common, *quick)
    assert 0 <= metrics["test/acc"] <= 1 and metrics["stopped_step"] >= 1
    assert (run_dir / "classes.json").exists()
