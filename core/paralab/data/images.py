"""Image datasets from their original files: MNIST (IDX) and Omniglot (the official zips)."""

from __future__ import annotations

import gzip
import io
import re
import zipfile
from pathlib import Path

import numpy as np
import torch

from paralab.data.builtin import stratified_split
from paralab.data.files import require_files, resolve_root
from paralab.data.shared import SharedDataset

MNIST_URL = "https://ossci-datasets.s3.amazonaws.com/mnist"
MNIST_FILES = {
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
}


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (MNIST's format), gzipped or not."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as handle:
        data = handle.read()
    dims = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims))
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def mnist(
    root: str | None = None,
    files: str = "test",
    test_fraction: float = 0.2,
    seed: int = 0,
    download: bool = False,
) -> SharedDataset:
    """MNIST from IDX files; inputs are ``(1, 28, 28)`` floats in [0, 1].

    ``files="test"`` reads only the official 10,000-image test split (what ``../shared/data``
    holds) and divides it into stratified ``train``/``test`` splits; ``files="both"`` reads the
    official training and test files as the ``train`` and ``test`` splits.
    """
    if files not in ("test", "both"):
        raise ValueError(f"mnist: files must be 'test' or 'both', got {files!r}")
    folder = resolve_root(root, "mnist")
    parts = ["test"] if files == "test" else ["train", "test"]
    names = [name for part in parts for name in MNIST_FILES[part]]
    paths = require_files(
        folder, names, dataset="mnist", urls={n: f"{MNIST_URL}/{n}" for n in names},
        download=download,
    )
    images = [read_idx(paths[MNIST_FILES[p][0]]) for p in parts]
    labels = [read_idx(paths[MNIST_FILES[p][1]]).astype(np.int64) for p in parts]
    x = np.concatenate(images).astype(np.float32)[:, None] / 255.0
    y = np.concatenate(labels)
    if files == "test":
        splits = stratified_split(y, test_fraction, seed)
    else:
        n_train = len(labels[0])
        splits = (torch.arange(n_train), torch.arange(n_train, len(y)))
    return SharedDataset(
        name="mnist",
        x=torch.from_numpy(x),
        y=torch.from_numpy(y),
        splits={"train": splits[0], "test": splits[1]},
        meta={"source": str(folder), "files": files, "image_shape": (1, 28, 28)},
    )


OMNIGLOT_SETS = {
    "small1": "images_background_small1.zip",
    "small2": "images_background_small2.zip",
    "background": "images_background.zip",
    "evaluation": "images_evaluation.zip",
}
_PNG = re.compile(r"^[^/]+/(?P<alphabet>[^/]+)/(?P<character>character\d+)/[^/]+\.png$")


def _decode(data: bytes, size: int) -> np.ndarray:
    """A 105x105 Omniglot PNG as a ``size``x``size`` float image, strokes = 1."""
    from PIL import Image

    image = Image.open(io.BytesIO(data)).convert("L")
    if image.size != (size, size):
        image = image.resize((size, size), Image.Resampling.BOX)
    return 1.0 - np.asarray(image, dtype=np.float32) / 255.0


def omniglot(
    root: str | None = None, sets: tuple[str, ...] | list[str] = ("small1", "small2"),
    image_size: int = 28,
) -> SharedDataset:
    """Omniglot characters from the official zips, one class per (alphabet, character).

    A character that appears in several sets (Greek and Latin are in both small sets) is one
    class. ``features["alphabet"]`` holds each image's alphabet code. There is no train/test
    split: few-shot protocols split by class.
    """
    unknown = [s for s in sets if s not in OMNIGLOT_SETS]
    if unknown:
        raise ValueError(f"omniglot: unknown sets {unknown}; choose from {sorted(OMNIGLOT_SETS)}")
    folder = resolve_root(root, "omniglot")
    paths = require_files(folder, [OMNIGLOT_SETS[s] for s in sets], dataset="omniglot")
    images, classes, seen = [], [], {}
    for path in paths.values():
        with zipfile.ZipFile(path) as archive:
            for entry in sorted(archive.namelist()):
                match = _PNG.match(entry)
                if match is None:
                    continue
                key = (match["alphabet"], match["character"])
                seen.setdefault(key, len(seen))
                images.append(_decode(archive.read(entry), image_size))
                classes.append(seen[key])
    keys = list(seen)
    alphabets = sorted({alphabet for alphabet, _ in keys})
    alphabet_of_class = np.array([alphabets.index(a) for a, _ in keys])
    y = np.array(classes, dtype=np.int64)
    return SharedDataset(
        name="omniglot",
        x=torch.from_numpy(np.stack(images)[:, None]),
        y=torch.from_numpy(y),
        features={"alphabet": torch.from_numpy(alphabet_of_class[y])},
        categories={"alphabet": tuple(alphabets)},
        class_names=tuple(f"{a}/{c}" for a, c in keys),
        meta={"source": str(folder), "sets": list(sets), "image_shape": (1, image_size, image_size)},
    )


def omniglot_runs(root: str | None = None, image_size: int = 28) -> SharedDataset:
    """The 20 one-shot classification runs of Lake et al. (2015), ``all_runs.zip``.

    Each run has 20 training images (one per class) and 20 test images. ``features["run"]``
    is the run (0..19), ``features["role"]`` 0 for training and 1 for test images, and ``y`` is
    the class within the run (0..19), the test images labelled by ``class_labels.txt``.
    """
    folder = resolve_root(root, "omniglot")
    path = require_files(folder, ["all_runs.zip"], dataset="omniglot_runs")["all_runs.zip"]
    images, labels, runs, roles = [], [], [], []
    with zipfile.ZipFile(path) as archive:
        for run in range(20):
            prefix = f"run{run + 1:02d}/"
            pairs = archive.read(prefix + "class_labels.txt").decode().split("\n")
            pairs = [line.split() for line in pairs if line.strip()]
            training = sorted({train for _, train in pairs})
            for position, name in enumerate(training):
                images.append(_decode(archive.read(name), image_size))
                labels.append(position)
                runs.append(run)
                roles.append(0)
            for test, train in pairs:
                images.append(_decode(archive.read(test), image_size))
                labels.append(training.index(train))
                runs.append(run)
                roles.append(1)
    return SharedDataset(
        name="omniglot_runs",
        x=torch.from_numpy(np.stack(images)[:, None]),
        y=torch.tensor(labels),
        features={"run": torch.tensor(runs), "role": torch.tensor(roles)},
        meta={"source": str(path), "image_shape": (1, image_size, image_size)},
    )
