"""Image datasets from their original files: MNIST (IDX) and Omniglot (the official zips)."""

from __future__ import annotations

import gzip
import io
import math
import re
import zipfile
import zlib
from pathlib import Path

import numpy as np
import torch

from paralab.data.builtin import stratified_split
from paralab.data.files import DataFileError, require_files, resolve_root
from paralab.data.shared import SharedDataset

MNIST_URL = "https://ossci-datasets.s3.amazonaws.com/mnist"
MNIST_FILES = {
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
}


IDX_UBYTE = 0x08
MNIST_MAGIC = {"images": 0x0803, "labels": 0x0801}
"""IDX magic numbers: unsigned bytes (0x08) in 3 dimensions (images) or 1 (labels)."""


def _idx_bytes(path: Path) -> bytes:
    """The file's bytes, gunzipped when it ends in ``.gz``; a broken gzip names the file."""
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as handle:
                return handle.read()
        return path.read_bytes()
    except (OSError, EOFError, zlib.error) as error:
        raise DataFileError(path, f"not a readable gzip file ({error})") from None


def read_idx(path: Path, magic: int | None = None) -> np.ndarray:
    """Read an IDX file (MNIST's format) of unsigned bytes, gzipped or not.

    The header is checked before anything is reshaped: two zero bytes, the type byte 0x08,
    the number of dimensions (``magic`` pins both), and a payload of exactly the size the
    dimensions give (a truncated or padded file is a :class:`DataFileError`).
    """
    data = _idx_bytes(path)
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != IDX_UBYTE:
        expected = f"0x{magic:08x} ({magic})" if magic else "0x000008.. (unsigned bytes)"
        raise DataFileError(path, f"bad IDX magic 0x{data[:4].hex()}: expected {expected}")
    got = int.from_bytes(data[:4], "big")
    if magic is not None and got != magic:
        raise DataFileError(path, f"IDX magic {got} ({data[3]} dimensions), expected {magic} "
                                  f"({magic & 0xFF} dimensions)")
    dims = data[3]
    header = 4 + 4 * dims
    if dims == 0 or len(data) < header:
        raise DataFileError(path, f"IDX header of {dims} dimensions is cut short "
                                  f"({len(data)} bytes)")
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims))
    expected = math.prod(shape)
    if len(data) - header != expected:
        raise DataFileError(path, f"IDX header says {' x '.join(map(str, shape))} = {expected} "
                                  f"bytes of data, the file has {len(data) - header} "
                                  "(truncated or padded)")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def _mnist_part(images_path: Path, labels_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One images/labels pair, checked together: 28x28 images, as many labels as images,
    every label a digit 0..9."""
    images = read_idx(images_path, MNIST_MAGIC["images"])
    labels = read_idx(labels_path, MNIST_MAGIC["labels"]).astype(np.int64)
    if images.shape[1:] != (28, 28):
        raise DataFileError(images_path, f"images of {images.shape[1]}x{images.shape[2]} "
                                         "pixels, MNIST's are 28x28")
    if len(images) != len(labels):
        raise DataFileError(labels_path, f"{len(labels)} labels for the {len(images)} images "
                                         f"of {images_path.name}")
    if not len(labels):
        raise DataFileError(labels_path, "no records")
    bad = np.flatnonzero((labels < 0) | (labels > 9))
    if bad.size:
        raise DataFileError(labels_path, f"label {int(labels[bad[0]])} is not a digit 0..9 "
                                         f"({bad.size} such labels)", record=int(bad[0]))
    return images, labels


def mnist(
    root: str | None = None,
    files: str = "test",
    test_fraction: float = 0.2,
    seed: int = 0,
    download: bool = False,
    verify: bool = False,
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
        download=download, verify=verify,
    )
    pairs = [_mnist_part(paths[MNIST_FILES[p][0]], paths[MNIST_FILES[p][1]]) for p in parts]
    images = [image for image, _ in pairs]
    labels = [label for _, label in pairs]
    x = np.concatenate(images).astype(np.float32)[:, None] / 255.0
    y = np.concatenate(labels)
    if files == "test":
        counts = np.bincount(y, minlength=10)
        if counts.min() < 2:
            raise DataFileError(paths[MNIST_FILES["test"][1]],
                                f"digit {int(counts.argmin())} has {int(counts.min())} "
                                "records; a stratified split needs 2 of each digit")
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


def _open_zip(path: Path) -> zipfile.ZipFile:
    """The archive, or a :class:`DataFileError` naming it (truncated, not a zip)."""
    try:
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, EOFError) as error:
        raise DataFileError(path, f"not a readable zip archive ({error})") from None


def _member(archive: zipfile.ZipFile, path: Path, entry: str) -> bytes:
    """One member's bytes; a missing member or a bad CRC names the archive and the member."""
    try:
        return archive.read(entry)
    except KeyError:
        raise DataFileError(path, f"the archive has no member {entry!r}") from None
    except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as error:
        raise DataFileError(path, f"member {entry!r} is corrupt ({error})") from None


def _image(archive: zipfile.ZipFile, path: Path, entry: str, size: int) -> np.ndarray:
    """One PNG member decoded; bytes that are not an image name the archive and the member."""
    data = _member(archive, path, entry)
    try:
        return _decode(data, size)
    except (OSError, ValueError, SyntaxError) as error:  # PIL: UnidentifiedImageError, truncated
        raise DataFileError(path, f"member {entry!r} is not a readable image ({error})") from None


def omniglot(
    root: str | None = None, sets: tuple[str, ...] | list[str] = ("small1", "small2"),
    image_size: int = 28, verify: bool = False, rotations: bool = False,
) -> SharedDataset:
    """Omniglot characters from the official zips, one class per (alphabet, character).

    A character that appears in several sets (Greek and Latin are in both small sets) is one
    class, and each drawing of it is loaded once: the small sets hold the same files, and a
    drawing twice would let a support image's exact copy be its own query (``meta`` counts the
    copies skipped). ``features["alphabet"]`` holds each image's alphabet code. There is no
    train/test split: few-shot protocols split by class.

    ``rotations = True`` adds each character turned by 90, 180 and 270 degrees as three new
    classes (the augmentation of Vinyals et al. 2016 and Snell et al. 2017: x4 classes).
    ``features["character"]`` is then each image's unrotated character, so that a class split
    keeps every rotation of a character on one side (a rotated copy of a test character in
    meta-training would leak it), and ``features["rotation"]`` its quarter turns (0-3).
    """
    unknown = [s for s in sets if s not in OMNIGLOT_SETS]
    if unknown:
        raise ValueError(f"omniglot: unknown sets {unknown}; choose from {sorted(OMNIGLOT_SETS)}")
    folder = resolve_root(root, "omniglot")
    paths = require_files(folder, [OMNIGLOT_SETS[s] for s in sets], dataset="omniglot",
                          verify=verify)
    images, classes, seen = [], [], {}
    drawings: set[tuple[str, str, str]] = set()
    copies = 0
    for path in paths.values():
        found = 0
        with _open_zip(path) as archive:
            for entry in sorted(archive.namelist()):
                match = _PNG.match(entry)
                if match is None:
                    continue
                found += 1
                key = (match["alphabet"], match["character"])
                drawing = (*key, entry.rsplit("/", 1)[1])
                if drawing in drawings:
                    copies += 1  # the same drawing from another set: load it once
                    continue
                drawings.add(drawing)
                seen.setdefault(key, len(seen))
                images.append(_image(archive, path, entry, image_size))
                classes.append(seen[key])
        if not found:
            raise DataFileError(path, "no images named <set>/<alphabet>/characterNN/*.png")
    keys = list(seen)
    alphabets = sorted({alphabet for alphabet, _ in keys})
    alphabet_of_class = np.array([alphabets.index(a) for a, _ in keys])
    character = np.array(classes, dtype=np.int64)
    x = torch.from_numpy(np.stack(images)[:, None])
    names = [f"{a}/{c}" for a, c in keys]
    turns = np.zeros_like(character)
    if rotations:  # class = character * 4 + quarter turns, images grouped by turn
        x = torch.cat([torch.rot90(x, k, dims=(2, 3)) for k in range(4)])
        turns = np.repeat(np.arange(4), len(character))
        character = np.tile(character, 4)
        names = [f"{name}/rot{90 * k}" if k else name for name in names for k in range(4)]
    y = character * 4 + turns if rotations else character
    features = {"alphabet": torch.from_numpy(alphabet_of_class[character])}
    if rotations:
        features["character"] = torch.from_numpy(character)
        features["rotation"] = torch.from_numpy(turns)
    return SharedDataset(
        name="omniglot",
        x=x.contiguous(),
        y=torch.from_numpy(y),
        features=features,
        categories={"alphabet": tuple(alphabets)},
        class_names=tuple(names),
        meta={"source": str(folder), "sets": list(sets), "image_shape": (1, image_size, image_size),
              "duplicate_drawings_skipped": copies, "rotations": rotations},
    )


OMNIGLOT_RUNS = 20
"""Runs in ``all_runs.zip``, each 20 classes: one training and one test image per class."""


def _run_pairs(archive: zipfile.ZipFile, path: Path, run: int) -> list[tuple[str, str]]:
    """``(test image, training image)`` of one run's ``class_labels.txt``, each line checked."""
    entry = f"run{run + 1:02d}/class_labels.txt"
    data = _member(archive, path, entry)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        raise DataFileError(path, f"member {entry!r} has bytes that are not UTF-8",
                            line=line) from None
    pairs = []
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        fields = line.split()
        if len(fields) != 2:
            raise DataFileError(path, f"member {entry!r}: {len(fields)} fields, expected 2 "
                                      "(test image, training image)", line=number)
        pairs.append((fields[0], fields[1]))
    if len(pairs) != OMNIGLOT_RUNS:
        raise DataFileError(path, f"member {entry!r} has {len(pairs)} pairs, expected "
                                  f"{OMNIGLOT_RUNS}")
    return pairs


def omniglot_runs(root: str | None = None, image_size: int = 28,
                  verify: bool = False) -> SharedDataset:
    """The 20 one-shot classification runs of Lake et al. (2015), ``all_runs.zip``.

    Each run has 20 training images (one per class) and 20 test images. ``features["run"]``
    is the run (0..19), ``features["role"]`` 0 for training and 1 for test images, and ``y`` is
    the class within the run (0..19), the test images labelled by ``class_labels.txt``.
    """
    folder = resolve_root(root, "omniglot")
    path = require_files(folder, ["all_runs.zip"], dataset="omniglot_runs",
                         verify=verify)["all_runs.zip"]
    images, labels, runs, roles = [], [], [], []
    with _open_zip(path) as archive:
        for run in range(OMNIGLOT_RUNS):
            pairs = _run_pairs(archive, path, run)
            training = sorted({train for _, train in pairs})
            for position, name in enumerate(training):
                images.append(_image(archive, path, name, image_size))
                labels.append(position)
                runs.append(run)
                roles.append(0)
            for test, train in pairs:
                images.append(_image(archive, path, test, image_size))
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
