"""paralab_tracking: record runs in CSV files, TensorBoard and MLflow, on the public hooks.

A spec chooses its trackers per run::

    trackers = ["csv", "tensorboard", { name = "mlflow", tracking_uri = "http://127.0.0.1:5000" }]

Each tracker is a plugin object the host registers for that one run (like middleware), so two
runs in one process never see each other's trackers. This module only declares the trackers
and their options; factories are ``"module:attribute"`` strings, so listing plugins never
imports torch, TensorBoard or MLflow (MLflow alone takes seconds to import).
"""

from __future__ import annotations

from paralab import Option, TrackerSpec, hookimpl

PARALAB_API = "1.0"

_RELATIVE = "relative to the run folder"


@hookimpl
def paralab_trackers() -> list[TrackerSpec]:
    return [
        TrackerSpec(
            "csv", "paralab_tracking.csv_tracker:CsvTracker",
            "Every scalar phase metric as CSV in the run folder: a long table (phase position, "
            "kind, index, metric, value) and a wide one (a row per phase); flushed after every "
            "phase, so an interrupted run keeps its rows.",
            {"path": Option("metrics_long.csv", type=str, min_length=1,
                            help=f"the long table, {_RELATIVE}"),
             "wide": Option("metrics.csv", type=str,
                            help=f"the wide table (a row per phase), {_RELATIVE}; empty: none")},
            example={},
        ),
        TrackerSpec(
            "tensorboard", "paralab_tracking.tensorboard_tracker:TensorBoardTracker",
            "TensorBoard event files (torch.utils.tensorboard): every scalar phase metric with "
            "step = phase position, the spec as text, the spec's values as hparams at the end.",
            {"log_dir": Option("tensorboard", type=str, min_length=1,
                               help=f"where the event files go, {_RELATIVE}; an absolute folder "
                                    "gets a subfolder per run")},
            example={},
            requires=("tensorboard",),
            install="pip install 'paralab[tracking]'",
        ),
        TrackerSpec(
            "mlflow", "paralab_tracking.mlflow_tracker:MlflowTracker",
            "MLflow runs in a real tracking store (default: sqlite:///<output>/mlflow.db; any "
            "tracking URI, e.g. an MLflow server): the spec as params, metrics per phase, "
            "plugin and version tags, the run folder as artifacts; a study is a parent run.",
            {"tracking_uri": Option("", type=str,
                                    help="MLflow tracking URI; empty: sqlite:///<output>/mlflow.db "
                                         "(the spec's output folder, or the study's folder)"),
             "experiment": Option("", type=str,
                                  help="MLflow experiment; empty: the study's name, else the "
                                       "spec's name"),
             "run_name": Option("", type=str,
                                help="MLflow run name; empty: the run folder's name (in a study: "
                                     "the configuration's label and the folder's name)"),
             "artifact_location": Option("", type=str,
                                         help="artifact root of an experiment this tracker "
                                              "creates; empty: <store folder>/mlartifacts for "
                                              "a sqlite store, the server's default otherwise"),
             "log_artifacts": Option(True, type=bool,
                                     help="upload the run folder's files when the run ends")},
            example={},
            requires=("mlflow",),
            install="pip install 'paralab[tracking]'",
        ),
    ]
