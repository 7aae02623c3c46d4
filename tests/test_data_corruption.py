"""Corrupt data files are rejected, naming the file and where (issue 14, items 9 and 10).

Each corruption is made from the real files (``$PARALAB_DATA``, never modified) in a copy
under ``tmp_path``, then run through ``paralab.run``: the loader's :class:`DataFileError` is a
``SpecError`` naming the file and what was wrong, and no run folder exists. ``CORRUPTIONS``
is the list the issue's closing figures count ("N corrupt files, N clear errors").

The ``ad_hoc`` sampler's hang (item 9) runs in a subprocess with a timeout, so a regression
fails the test instead of hanging the suite.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

import paralab
from paralab import SpecError
from paralab.data.files import DataFileError, verify_files
from paralab.host import get_registry
from tests.fairness_helpers import components_of, signature_mismatches

Mutate = Callable[[Path], None]


@dataclass(frozen=True)
class Corruption:
    """One corrupt copy: which dataset reads it, which files to copy, how to break them, and
    what the error must say besides the file's name."""

    name: str
    dataset: str
    folder: str
    files: tuple[str, ...]
    broken: str
    """The file the error must name."""
    mutate: Mutate
    expect: str
    options: tuple[tuple[str, object], ...] = ()


def _edit_lines(name: str, edit: Callable[[list[bytes]], list[bytes]]) -> Mutate:
    def mutate(folder: Path) -> None:
        path = folder / name
        lines = path.read_bytes().split(b"\n")
        path.write_bytes(b"\n".join(edit(lines)))
    return mutate


def _set_field(name: str, line: int, column: int, value: bytes, sep: bytes) -> Mutate:
    """Line ``line`` (1-based), field ``column`` set to ``value``."""
    def edit(lines: list[bytes]) -> list[bytes]:
        fields = lines[line - 1].split(sep)
        fields[column] = value
        lines[line - 1] = sep.join(fields)
        return lines
    return _edit_lines(name, edit)


def _german_field(line: int, column: int, value: bytes) -> Mutate:
    def edit(lines: list[bytes]) -> list[bytes]:
        fields = lines[line - 1].split()
        fields[column] = value
        lines[line - 1] = b" ".join(fields)
        return lines
    return _edit_lines("german.data", edit)


def _truncate_mid_line(name: str) -> Mutate:
    """The first half of the file, cut inside a line (a download that stopped)."""
    def mutate(folder: Path) -> None:
        path = folder / name
        data = path.read_bytes()
        cut = len(data) // 2
        while data[cut - 1 : cut + 1].count(b"\n"):
            cut += 3
        path.write_bytes(data[:cut])
    return mutate


def _garbage(name: str) -> Mutate:
    def mutate(folder: Path) -> None:
        (folder / name).write_bytes(b"".join(b"garbage line %d\n" % i for i in range(40000)))
    return mutate


def _empty(name: str) -> Mutate:
    def mutate(folder: Path) -> None:
        (folder / name).write_bytes(b"")
    return mutate


def _only_class(name: str, keep: bytes) -> Mutate:
    """Keep only the records whose label is ``keep`` (and the banner)."""
    return _edit_lines(name, lambda lines: [ln for ln in lines
                                            if keep in ln or ln.startswith(b"|")])


def _idx(name: str, edit: Callable[[bytearray], bytes]) -> Mutate:
    """Edit the decompressed IDX bytes of a ``.gz`` file and compress them again."""
    def mutate(folder: Path) -> None:
        path = folder / name
        data = bytearray(gzip.decompress(path.read_bytes()))
        path.write_bytes(gzip.compress(bytes(edit(data)), compresslevel=1))
    return mutate


def _poke(offset: int, value: int) -> Callable[[bytearray], bytes]:
    def edit(data: bytearray) -> bytes:
        data[offset] = value
        return bytes(data)
    return edit


def _labels_dropped(data: bytearray) -> bytes:
    """One label fewer, the header's count agreeing (a consistent but wrong labels file)."""
    data[4:8] = (9999).to_bytes(4, "big")
    return bytes(data[:-1])


def _truncate_gzip(name: str) -> Mutate:
    def mutate(folder: Path) -> None:
        path = folder / name
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    return mutate


def _zip_member_replaced(name: str, member_index: int, payload: bytes) -> Mutate:
    """Rewrite the archive with the ``member_index``-th PNG's bytes replaced."""
    def mutate(folder: Path) -> None:
        path = folder / name
        with zipfile.ZipFile(path) as source:
            members = [(info, source.read(info)) for info in source.infolist()]
        pngs = [info.filename for info, _ in members if info.filename.endswith(".png")]
        target = pngs[member_index]
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as out:
            for info, data in members:
                out.writestr(info, payload if info.filename == target else data)
        path.write_bytes(buffer.getvalue())
    return mutate


def _sums_then(mutate: Mutate, *names: str) -> Mutate:
    """Write a SHA256SUMS of the true files, then corrupt them (what ``verify`` catches)."""
    def both(folder: Path) -> None:
        lines = [f"{hashlib.sha256((folder / n).read_bytes()).hexdigest()}  ./{n}\n"
                 for n in names]
        (folder / "SHA256SUMS").write_text("".join(lines))
        mutate(folder)
    return both


ADULT = ("adult.data", "adult.test")
GERMAN = ("german.data",)
COMPAS = ("compas-scores-two-years.csv",)
MNIST = ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
IMAGES, LABELS = MNIST
RUNS = ("all_runs.zip",)

CORRUPTIONS = [
    Corruption("adult all garbage", "adult", "adult", ADULT, "adult.data",
               _garbage("adult.data"), "line 1: 1 comma-separated fields, expected 15"),
    Corruption("adult nan age", "adult", "adult", ADULT, "adult.data",
               _set_field("adult.data", 5, 0, b"nan", b","),
               "line 5: column 'age' = 'nan' is not a finite number"),
    Corruption("adult inf hours", "adult", "adult", ADULT, "adult.test",
               _set_field("adult.test", 3, 12, b" inf", b","),
               "line 3: column 'hours_per_week' = 'inf' is not a finite number"),
    Corruption("adult unknown label", "adult", "adult", ADULT, "adult.data",
               _set_field("adult.data", 10, 14, b" maybe", b","),
               "line 10: column 'income' = 'maybe' is not one of <=50K, >50K"),
    Corruption("adult wrong column count", "adult", "adult", ADULT, "adult.data",
               _edit_lines("adult.data", lambda ls: [*ls[:99], ls[99].rsplit(b",", 2)[0],
                                                     *ls[100:]]),
               "line 100: 13 comma-separated fields, expected 15"),
    Corruption("adult non-UTF-8 bytes", "adult", "adult", ADULT, "adult.data",
               _set_field("adult.data", 7, 13, b" \xff\xfeUnited", b","),
               "line 7: bytes that are not utf-8"),
    Corruption("adult one class in the test file", "adult", "adult", ADULT, "adult.test",
               _only_class("adult.test", b"<=50K."),
               "too few rows of a class of split 'test' ('>50K': 0; need 1 each)"),
    Corruption("adult empty test file", "adult", "adult", ADULT, "adult.test",
               _empty("adult.test"), "the file is empty"),
    Corruption("german truncated mid-line", "german_credit", "german_credit", GERMAN,
               "german.data", _truncate_mid_line("german.data"), "fields, expected 21"),
    Corruption("german nan age", "german_credit", "german_credit", GERMAN, "german.data",
               _german_field(12, 12, b"nan"), "line 12: column 'age' = 'nan' is not a finite"),
    Corruption("german garbage code", "german_credit", "german_credit", GERMAN, "german.data",
               _german_field(3, 0, b"XYZ"),
               "line 3: column 'status' = 'XYZ' is not an attribute code like A11"),
    Corruption("german class out of range", "german_credit", "german_credit", GERMAN,
               "german.data", _german_field(8, 20, b"3"),
               "line 8: column 'credit' = '3' is not 1 (good) or 2 (bad)"),
    Corruption("german one class only", "german_credit", "german_credit", GERMAN,
               "german.data", _edit_lines("german.data",
                                          lambda ls: [ln for ln in ls if ln.endswith(b" 1")]),
               "too few rows of a class ('bad': 0; need 2 each)"),
    Corruption("compas missing column", "compas", "compas", COMPAS, COMPAS[0],
               _edit_lines(COMPAS[0], lambda ls: [ls[0].replace(b"two_year_recid", b"recid2"),
                                                  *ls[1:]]),
               "line 1: header lacks the columns two_year_recid"),
    Corruption("compas short row", "compas", "compas", COMPAS, COMPAS[0],
               _edit_lines(COMPAS[0], lambda ls: [*ls[:41], ls[41].rsplit(b",", 3)[0],
                                                  *ls[42:]]),
               "line 42: 50 fields, the header has 53"),
    Corruption("compas text for a number", "compas", "compas", COMPAS, COMPAS[0],
               _set_field(COMPAS[0], 20, 7, b"lots", b","),
               "line 20: column 'age' = 'lots' is not a number"),
    Corruption("mnist label 200", "mnist", "mnist", MNIST, LABELS,
               _idx(LABELS, _poke(8 + 17, 200)),
               "record 17: label 200 is not a digit 0..9 (1 such labels)"),
    Corruption("mnist bad IDX magic", "mnist", "mnist", MNIST, IMAGES,
               _idx(IMAGES, _poke(3, 1)), "IDX magic 2049 (1 dimensions), expected 2051"),
    Corruption("mnist not IDX at all", "mnist", "mnist", MNIST, IMAGES,
               _idx(IMAGES, lambda data: b"PK\x03\x04" + bytes(data[4:])),
               "bad IDX magic 0x504b0304: expected 0x00000803 (2051)"),
    Corruption("mnist IDX size mismatch", "mnist", "mnist", MNIST, IMAGES,
               _idx(IMAGES, lambda data: bytes(data[:-784 * 3])),
               "IDX header says 10000 x 28 x 28 = 7840000 bytes of data, the file has 7837648"),
    Corruption("mnist fewer labels than images", "mnist", "mnist", MNIST, LABELS,
               _idx(LABELS, _labels_dropped), "9999 labels for the 10000 images"),
    Corruption("mnist truncated gzip", "mnist", "mnist", MNIST, IMAGES,
               _truncate_gzip(IMAGES), "not a readable gzip file"),
    Corruption("omniglot runs not a zip", "omniglot_runs", "omniglot", RUNS, RUNS[0],
               _garbage(RUNS[0]), "not a readable zip archive"),
    Corruption("omniglot runs PNG garbage", "omniglot_runs", "omniglot", RUNS, RUNS[0],
               _zip_member_replaced(RUNS[0], 5, b"not a png at all"),
               "is not a readable image"),
    Corruption("german checksum mismatch (verify)", "german_credit", "german_credit", GERMAN,
               "german.data", _sums_then(_german_field(1, 4, b"1168"), "german.data"),
               "does not match", options=(("verify", True),)),
    Corruption("mnist checksum mismatch (verify)", "mnist", "mnist", MNIST, LABELS,
               _sums_then(_idx(LABELS, _poke(8, 3)), *MNIST),
               "does not match", options=(("verify", True),)),
]


def _copy(data_root: Path, corruption: Corruption, tmp_path: Path) -> Path:
    folder = tmp_path / "data" / corruption.folder
    folder.mkdir(parents=True)
    for name in corruption.files:
        shutil.copyfile(data_root / corruption.folder / name, folder / name)
    return folder


def _run(dataset: dict[str, object], output: Path) -> paralab.Result:
    return paralab.run({"dataset": dataset, "model": "linear", "name": "corrupt",
                        "protocol": {"name": "supervised", "epochs": 1},
                        "output": str(output)})


def test_there_are_at_least_fifteen_corruptions() -> None:
    assert len(CORRUPTIONS) >= 15
    assert len({c.name for c in CORRUPTIONS}) == len(CORRUPTIONS)


@pytest.mark.parametrize("corruption", CORRUPTIONS, ids=[c.name for c in CORRUPTIONS])
def test_a_corrupt_file_is_a_spec_error_naming_it(corruption: Corruption, data_root: Path,
                                                  tmp_path: Path) -> None:
    folder = _copy(data_root, corruption, tmp_path)
    corruption.mutate(folder)
    output = tmp_path / "runs"
    with pytest.raises(SpecError) as caught:
        _run({"name": corruption.dataset, "root": str(folder), **dict(corruption.options)},
             output)
    message = str(caught.value)
    assert str(folder / corruption.broken) in message, message
    assert corruption.expect in message, message
    assert isinstance(caught.value.__cause__, DataFileError)
    assert not output.exists(), "a rejected spec leaves no run folder"


def test_a_checksum_mismatch_names_both_digests(data_root: Path, tmp_path: Path) -> None:
    corruption = next(c for c in CORRUPTIONS if c.name.startswith("german checksum"))
    folder = _copy(data_root, corruption, tmp_path)
    true_digest = hashlib.sha256((folder / "german.data").read_bytes()).hexdigest()
    corruption.mutate(folder)
    new_digest = hashlib.sha256((folder / "german.data").read_bytes()).hexdigest()
    with pytest.raises(DataFileError) as caught:
        verify_files([folder / "german.data"])
    assert f"sha256 {new_digest} does not match {true_digest}" in str(caught.value)
    # Without verify the edit is a plausible value: only the checksum can tell.
    from paralab.data.tabular import german_credit

    assert len(german_credit(root=str(folder))) == 1000


def test_verify_passes_on_the_real_files_and_needs_a_sums_file(data_root: Path,
                                                               tmp_path: Path) -> None:
    from paralab.data.images import mnist
    from paralab.data.tabular import german_credit

    assert (data_root / "SHA256SUMS").is_file(), "the shared data ships its checksums"
    assert len(german_credit(root=str(data_root / "german_credit"), verify=True)) == 1000
    assert len(mnist(root=str(data_root / "mnist"), verify=True)) == 10000
    folder = tmp_path / "german_credit"
    folder.mkdir()
    shutil.copyfile(data_root / "german_credit" / "german.data", folder / "german.data")
    with pytest.raises(DataFileError, match="verify = true, but there is no SHA256SUMS"):
        german_credit(root=str(folder), verify=True)
    (folder / "SHA256SUMS").write_text(f"{'0' * 64}  ./other.file\n")
    with pytest.raises(DataFileError, match="does not list this file"):
        german_credit(root=str(folder), verify=True)
    (folder / "SHA256SUMS").write_text("not a checksum line\n")
    with pytest.raises(DataFileError, match=r"SHA256SUMS: line 1: not a sha256sum line"):
        german_credit(root=str(folder), verify=True)


def test_real_file_datasets_declare_verify_and_match_their_factories() -> None:
    registry = get_registry()
    datasets = [c for c in components_of(registry, "paralab") if c.kind == "dataset"]
    for component in datasets:
        assert signature_mismatches(component) == [], component.name
    real = {c.name for c in datasets if c.needs_root}
    assert real == {"mnist", "omniglot", "omniglot_runs", "compas", "adult", "german_credit"}
    assert all(registry.component("dataset", n).defaults()["verify"] is False for n in real)


# -- item 9: the ad_hoc sampler -------------------------------------------------------------

_HANG_PROBE = """
import json, math, sys, time
import paralab
from paralab_quantum.data import ad_hoc
out = {}
started = time.perf_counter()
try:
    paralab.run({"dataset": {"name": "ad_hoc", "n": 3, "gap": 0.95}, "protocol": "kernel",
                 "method": "qsvc", "output": sys.argv[1]})
    out["run"] = "completed"
except paralab.SpecError as error:
    out["run"] = str(error)
for gap in (5.0, math.nan, 0.99):
    try:
        ad_hoc(gap=gap)
        out[repr(gap)] = "completed"
    except ValueError as error:
        out[repr(gap)] = str(error)
out["seconds"] = time.perf_counter() - started
print(json.dumps(out))
"""


def test_an_ad_hoc_gap_that_leaves_no_points_errors_quickly(tmp_path: Path) -> None:
    """Before the fix each of these spun forever in qiskit's grid sampler."""
    output = tmp_path / "runs"
    done = subprocess.run([sys.executable, "-c", _HANG_PROBE, str(output)], cwd=Path.cwd(),
                          capture_output=True, text=True, timeout=240, check=True)
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert "dataset: dataset 'ad_hoc' (paralab_quantum): ad_hoc: gap = 0.95 leaves too few " \
           "points: class A has 0 of the 8000 grid points for n = 3" in out["run"]
    assert out["run"].endswith("lower gap or training_size")
    assert "gap = 5.0 must be a number in [0, 1)" in out["5.0"]
    assert "gap = nan must be a number in [0, 1)" in out["nan"]
    assert "gap = 0.99 leaves too few points: class A has 2 of the 10000" in out["0.99"]
    assert out["seconds"] < 30, out
    assert not output.exists()


def test_the_ad_hoc_draws_have_a_limit() -> None:
    from paralab_quantum.data import DRAWS_PER_GRID_POINT, _draw

    labels = np.zeros((4, 4))  # no point of either class: qiskit's loop would never end
    with pytest.raises(ValueError, match=f"{DRAWS_PER_GRID_POINT * 16} draws gave 0 of 3"):
        _draw(1, 3, np.arange(4.0), labels, np.random.default_rng(0))


@pytest.mark.parametrize(("n", "gap", "training", "test", "seed"),
                         [(2, 0.3, 20, 5, 12345), (3, 0.3, 20, 5, 12345), (2, 0.6, 30, 10, 7)])
def test_the_ad_hoc_points_are_qiskits(n: int, gap: float, training: int, test: int,
                                       seed: int) -> None:
    """Our bounded sampler draws exactly the points qiskit-machine-learning does."""
    datasets = pytest.importorskip("qiskit_machine_learning.datasets")
    from qiskit_machine_learning.utils import algorithm_globals

    from paralab_quantum.data import ad_hoc

    algorithm_globals.random_seed = seed
    train_x, train_y, test_x, test_y = datasets.ad_hoc_data(
        training_size=training, test_size=test, n=n, gap=gap, one_hot=False)
    ours = ad_hoc(training_size=training, test_size=test, n=n, gap=gap, seed=seed)
    x = np.concatenate([train_x, test_x]).astype(np.float32)
    assert np.array_equal(ours.x.numpy(), x)
    assert ours.y.tolist() == np.concatenate([train_y, test_y]).tolist()


def test_biased_synthetic_with_one_class_is_a_clear_error() -> None:
    from paralab_fairness.synthetic import biased_synthetic

    with pytest.raises(ValueError, match="gives 1 negative and 19 positive rows; need 2 of each"):
        biased_synthetic(n=20, bias=100.0, minority_fraction=0.01)
