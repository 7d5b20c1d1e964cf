"""dataset.download=true runs torchvision's real downloaders against a local file server (no test
touches the internet): files land where the readers look, corrupt or partial files are caught,
and a dead network gives one error saying where to put the files."""

from __future__ import annotations

import functools
import hashlib
import http.server
import pickle
import shutil
import tarfile
import threading
from pathlib import Path

import pytest
import torchvision.datasets

from certlight.data import CertifiedDataModule
from certlight.errors import CertlightError

from conftest import write_cifar_like, write_mnist_like


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


@pytest.fixture
def file_server(tmp_path):
    """An HTTP server on localhost serving ``tmp_path / "served"``; yields (folder, base URL)."""
    served = tmp_path / "served"
    served.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield served, f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()


@pytest.fixture
def mnist_mirror(file_server, tmp_path, monkeypatch):
    """Our fixture's MNIST .gz files served as torchvision's only mirror, with their checksums."""
    served, url = file_server
    source = write_mnist_like(tmp_path / "source") / "MNIST" / "raw"
    for file in source.iterdir():
        shutil.copy(file, served / file.name)
    monkeypatch.setattr(torchvision.datasets.MNIST, "mirrors", [url])
    monkeypatch.setattr(torchvision.datasets.MNIST, "resources", [(f.name, md5(f)) for f in sorted(source.iterdir())])
    return served


def test_mnist_is_downloaded_into_the_data_root_and_read(mnist_mirror, tmp_path):
    root = tmp_path / "data"
    module = CertifiedDataModule("mnist", root=str(root), download=True, device_resident=False)
    module.setup("fit")
    assert (root / "MNIST" / "raw" / "train-images-idx3-ubyte.gz").is_file()
    assert module.num_train_total == 300 and module.num_test_total == 100


def test_a_partial_download_is_caught_by_its_checksum(mnist_mirror, tmp_path):
    name = "train-images-idx3-ubyte.gz"
    data = (mnist_mirror / name).read_bytes()
    (mnist_mirror / name).write_bytes(data[: len(data) // 2])  # the server now sends half the file
    with pytest.raises(
        CertlightError, match=r"downloading mnist into .* failed: .*corrupted.*put the files under .*MNIST"
    ):
        CertifiedDataModule("mnist", root=str(tmp_path / "data"), download=True).setup("fit")


def test_without_network_the_error_says_where_to_put_the_files(monkeypatch, tmp_path):
    monkeypatch.setattr(
        torchvision.datasets.FashionMNIST, "mirrors", ["http://127.0.0.1:9/"]
    )  # the discard port: refused
    with pytest.raises(
        CertlightError,
        match=r"downloading fashion_mnist .* failed: .*Connection refused.*put the files under .*FashionMNIST",
    ):
        CertifiedDataModule("fashion_mnist", root=str(tmp_path / "data"), download=True).setup("fit")


def test_cifar10_archive_is_downloaded_checked_and_unpacked(file_server, tmp_path, monkeypatch):
    served, url = file_server
    batches = write_cifar_like(tmp_path / "source") / "cifar-10-batches-py"
    with open(batches / "batches.meta", "wb") as handle:  # the archive's class names, which torchvision reads
        pickle.dump(
            {"label_names": [f"class{i}" for i in range(10)], "num_cases_per_batch": 20, "num_vis": 3072}, handle
        )
    with tarfile.open(served / "cifar-10-python.tar.gz", "w:gz") as archive:
        archive.add(batches, arcname="cifar-10-batches-py")
    cifar = torchvision.datasets.CIFAR10
    monkeypatch.setattr(cifar, "url", url + "cifar-10-python.tar.gz")
    monkeypatch.setattr(cifar, "tgz_md5", md5(served / "cifar-10-python.tar.gz"))
    monkeypatch.setattr(cifar, "train_list", [[n, md5(batches / n)] for n, _ in cifar.train_list])
    monkeypatch.setattr(cifar, "test_list", [[n, md5(batches / n)] for n, _ in cifar.test_list])
    monkeypatch.setattr(cifar, "meta", {**cifar.meta, "md5": md5(batches / "batches.meta")})
    module = CertifiedDataModule("cifar10", root=str(tmp_path / "data"), download=True, device_resident=False)
    module.setup("fit")
    assert module.num_train_total == 100 and module.num_test_total == 20


def test_without_download_nothing_is_fetched(tmp_path):
    with pytest.raises(
        CertlightError,
        match=r"(?s)dataset 'mnist' not found under data root.*or fetch it there with dataset.download=true",
    ):
        CertifiedDataModule("mnist", root=str(tmp_path / "empty")).setup("fit")
