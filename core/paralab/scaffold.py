"""``paralab init``: a starter experiment spec, or a plugin skeleton that passes ``check-plugin``.

The plugin skeleton is what a third-party author would otherwise assemble from the docs: a
``pyproject.toml`` that registers the package in the ``paralab`` entry-point group, a package
whose ``__init__`` declares its components (names, factory strings and options only, so that
listing plugins never imports torch), a ``components`` module with the torch code, a test that
runs the conformance kit and a composed run, and a README. Everything is written as text from
the templates below: nothing is copied from the repository, so the skeleton is the same from a
wheel as from a checkout. A test builds it, installs it into a fresh virtual environment with
pip and runs ``paralab check-plugin`` on it (tests/test_scaffold.py).
"""

from __future__ import annotations

import keyword
import re
from pathlib import Path

STARTER_SPEC = '''\
# A paralab experiment: one dataset, one model, one protocol (and its method), auditors.
# Run it with `paralab run {name}`; `paralab list` shows every component you can name here,
# `paralab show KIND NAME` one component's options.
name = "{stem}"
seed = 0
dataset = "digits"            # scikit-learn's bundled digits: nothing to download
model = {{ name = "mlp", hidden = [64] }}
protocol = {{ name = "supervised", epochs = 5, batch_size = 32 }}
method = {{ name = "sgd", lr = 0.1 }}
metrics = ["accuracy"]
output = "runs"               # a folder per run: result.json, metrics.csv, plots

# Compose other paradigms by naming their components, for example:
# auditors = [{{ name = "faithfulness" }}]
# protocol = {{ name = "federated", rounds = 5, clients = 20, clients_per_round = 5 }}
# method = "fedavg"
'''

_PYPROJECT = '''\
[build-system]
requires = ["setuptools>=61"]
build-backend = "setuptools.build_meta"

[project]
name = "{distribution}"
version = "0.1.0"
description = "A paralab plugin: {package}."
requires-python = ">=3.11"
dependencies = ["paralab>=0.1"]

# paralab finds plugins through this entry-point group, bundled ones included.
[project.entry-points.paralab]
{package} = "{package}"

[tool.setuptools]
packages = ["{package}"]

[tool.setuptools.package-data]
{package} = ["py.typed"]
'''

_INIT = '''\
"""{package}: a paralab plugin (made by `paralab init --plugin`).

Declarations only: names, ``"module:attribute"`` factory strings and options. paralab
imports this module to list plugins, so it must not import torch; the factories in
``{package}.components`` are imported when an experiment uses them.
"""

from paralab import MetricSpec, ModelSpec, count, hookimpl

PARALAB_API = "1.0"  # the host API this plugin is written against (a string)


@hookimpl
def paralab_models():
    return [
        ModelSpec(
            name="{prefix}_mlp",
            factory="{package}.components:small_mlp",
            description="A one-hidden-layer MLP of the given width.",
            options={{"width": count(16, help="hidden units")}},
            example={{"width": 4}},
        )
    ]


@hookimpl
def paralab_metrics():
    return [
        MetricSpec(
            name="{prefix}_error_rate",
            factory="{package}.components:error_rate",
            description="Fraction of rows predicted wrongly (1 - accuracy).",
        )
    ]
'''

_COMPONENTS = '''\
"""The torch side of {package}: what the declarations in ``__init__`` name."""

from __future__ import annotations

from torch import nn

from paralab import DatasetInfo, Predictions, SharedDataset, accuracy


def small_mlp(info: DatasetInfo, width: int = 16) -> nn.Module:
    """``info`` tells the shapes of the run's dataset: features in, classes out."""
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(info.n_features, width),
        nn.ReLU(),
        nn.Linear(width, info.n_classes),
    )


def error_rate():
    """A metric factory: returns ``metric(predictions, dataset) -> float``."""

    def metric(predictions: Predictions, dataset: SharedDataset) -> float:
        return 1.0 - accuracy(predictions)

    return metric
'''

_TEST = '''\
"""The conformance kit on {package}, and one composed run with bundled plugins."""

import paralab
from paralab.testing import check_plugin


def test_conformance():
    report = check_plugin("{package}")
    assert report.passed, report.render()


def test_composed_run():
    result = paralab.run({{
        "dataset": "iris",
        "model": {{"name": "{prefix}_mlp", "width": 8}},
        "protocol": {{"name": "supervised", "epochs": 3}},
        "metrics": ["accuracy", "{prefix}_error_rate"],
        "output": None,
    }})
    assert result.status == "completed"
    metrics = result.metrics
    assert abs(metrics["test/accuracy"] + metrics["test/{prefix}_error_rate"] - 1) < 1e-6
'''

_README = '''\
# {distribution}

A paralab plugin. Install it beside paralab and check it:

```bash
pip install -e .
paralab plugins                 # lists {package}
paralab check-plugin {package}  # the conformance suite
pytest tests                    # the kit and a composed run
```

Use its components in any experiment spec:

```toml
dataset = "iris"
model = {{ name = "{prefix}_mlp", width = 8 }}
protocol = {{ name = "supervised", epochs = 3 }}
metrics = ["accuracy", "{prefix}_error_rate"]
```
'''

_PACKAGE_NAME = re.compile(r"[a-z_][a-z0-9_]*")


def _check_package_name(name: str) -> None:
    if not _PACKAGE_NAME.fullmatch(name) or keyword.iskeyword(name):
        raise ValueError(
            f"plugin name {name!r} is not a valid Python package name: use lower-case "
            "letters, digits and underscores, starting with a letter (e.g. my_plugin)"
        )


def write_spec(path: Path) -> Path:
    """Write the starter experiment spec to ``path``; refuses to overwrite a file."""
    path = Path(path)
    if path.exists():
        raise FileExistsError(f"{path} exists; paralab init never overwrites a file")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(STARTER_SPEC.format(name=path, stem=path.stem), encoding="utf-8")
    return path


def write_plugin(package: str, folder: Path | None = None) -> Path:
    """Write a plugin skeleton for ``package`` into ``folder`` (default: ./<dist name>).

    The components are named ``<package-without-paralab_-prefix>_mlp`` and ``..._error_rate``,
    so two skeletons never collide in one registry."""
    _check_package_name(package)
    distribution = package.replace("_", "-")
    folder = Path(folder) if folder is not None else Path.cwd() / distribution
    if folder.exists() and any(folder.iterdir()):
        raise FileExistsError(f"{folder} exists and is not empty; paralab init never "
                              "overwrites files")
    prefix = package.removeprefix("paralab_")
    values = {"package": package, "distribution": distribution, "prefix": prefix}
    files = {
        "pyproject.toml": _PYPROJECT,
        f"{package}/__init__.py": _INIT,
        f"{package}/components.py": _COMPONENTS,
        f"{package}/py.typed": "",
        f"tests/test_{package}.py": _TEST,
        "README.md": _README,
    }
    for relative, template in files.items():
        path = folder / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(template.format(**values), encoding="utf-8")
    return folder
