"""Run any Avalanche strategy on a paralab stream: Avalanche trains, paralab evaluates.

The method ``avalanche`` builds ``avalanche.training.<strategy>`` (``Naive``, ``EWC``,
``Replay``, ``LwF``, ``SynapticIntelligence``, ``GEM``, ``AGEM``, ``Cumulative``, ``MAS``, ...)
on the run's model, and turns each paralab experience into an Avalanche experience: the
experience's rows are gathered from the shared tensors (its transform applied) into an
Avalanche tensor dataset with the experience's task label, and the scenario is built with
``benchmark_from_datasets``. The protocol evaluates with paralab's engine as for any method,
so R, forgetting and transfer are measured the same way for native and Avalanche strategies.

With ``avalanche_metrics = true`` Avalanche also evaluates the test stream at the same points
with its own metrics (stream accuracy, ``StreamForgetting``, ``StreamBWT``,
``StreamForwardTransfer``), recorded as ``avalanche/...``: a side-by-side check of paralab's
metrics against Avalanche's.

Notes: Avalanche trains all output units (it has no notion of paralab's task masks) and
the spec's loss terms do not enter Avalanche's loss, so the method is declared with
``applies_losses=False``: a spec pairing it with ``losses`` is rejected before it runs.
Options are declared in ``paralab_continual/__init__.py``; what needs Avalanche itself (a
``strategy_options`` key the strategy's constructor does not take) is checked in
:meth:`AvalancheStrategy.check`, before any run folder exists.
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import torch

from paralab import ContinualStrategy
from paralab_continual.icarl import split_model
from paralab_continual.scenarios import Experience, ScenarioError, Stream
from paralab_continual.strategies import gather

if TYPE_CHECKING:
    from paralab import RunContext, SharedDataset

ALIASES = {"SI": "SynapticIntelligence"}
"""Short names users type for Avalanche classes."""

REQUIRED_DEFAULTS: dict[str, dict[str, Any]] = {
    "EWC": {"ewc_lambda": 100.0},
    "LwF": {"alpha": 1.0, "temperature": 2.0},
    "SynapticIntelligence": {"si_lambda": 1.0},
    "GEM": {"patterns_per_exp": 100},
    "AGEM": {"patterns_per_exp": 100},
    "MAS": {},
    "ICaRL": {"memory_size": 2000, "buffer_transform": None, "fixed_memory": True},
    "MIR": {"mem_size": 200, "subsample": 50},
}
"""Values for Avalanche constructor arguments that have no default there (ICaRL's are the
paper's memory of 2000 exemplars, fixed, no buffer transform)."""

UNSUPPORTED: dict[str, str] = {
    "PackNet": "PackNet isolates parameters per task: its model (avalanche.models.PackNetModel) "
               "needs the task label in every forward pass, and paralab evaluates a model on "
               "rows alone; use a native strategy",
    "BiC": "Avalanche 0.6's BiC assigns experience.dataset, which the experiences of "
           "benchmark_from_datasets (the streams the adapter builds) do not allow "
           "(AttributeError: property 'dataset' ... has no setter); paralab's native "
           "method 'bic' implements it",
    "JointTraining": "JointTraining trains once on the whole stream, not experience by "
                     "experience; use paralab's method 'joint' (offline, the upper bound)",
    "AR1": "AR1 downloads a pretrained MobileNet, and runs have no network",
    "AETraining": "AETraining trains an autoencoder, not a classifier paralab can evaluate",
    "VAETraining": "VAETraining trains a generator, not a classifier paralab can evaluate "
                   "(GenerativeReplay uses it inside)",
    "ExpertGateStrategy": "ExpertGateStrategy needs an avalanche.models.ExpertGate model",
    "PNNStrategy": "PNNStrategy needs an avalanche.models.PNN model (columns per task, "
                   "called with task labels)",
    "SCR": "SCR needs an avalanche.models.SCRModel (a projection head)",
    "LearningToPrompt": "LearningToPrompt builds a pretrained vision transformer (model_name), "
                        "not the run's model",
    "StreamingLDA": "StreamingLDA needs its own slda_model and trains no run model",
    "FeatureReplay": "FeatureReplay needs a model with a `classifier` attribute, which "
                     "paralab's models do not have",
    "ER_AML": "ER_AML needs a separate feature_extractor module the adapter does not build",
    "CWRStar": "CWRStar needs cwr_layer_name, the name of a layer of avalanche's own model "
               "families, and freezes the others",
    "CoPE": "CoPE's prototype size (p_size) and memory must match the model's output, which "
            "the adapter does not set up",
    "LFL": "LFL calls model.get_features(), which only avalanche's BaseModel subclasses have",
    "GSS_greedy": "GSS_greedy needs input_size and a gradient memory sized to the model, "
                  "which the adapter does not set up",
}
"""Avalanche strategies that cannot run (or would not give a result paralab can evaluate)
through the adapter, and why: :meth:`AvalancheStrategy.check` rejects them before anything
runs, naming the strategy, instead of a crash inside Avalanche in the middle of a run."""

CPU_NO_OP: dict[str, str] = {
    "SynapticIntelligence": (
        "is a no-op on the CPU in Avalanche 0.6: its snapshots of the weights "
        "(`param.detach().cpu().flatten()`) are views of the live parameters when they already "
        "live on the CPU, so every weight change it measures is 0, its importances are 0 and "
        "its penalty is 0 (measured: exactly naive's accuracy at si_lambda 1 and 1000). Use "
        "paralab's native method 'si', or run on a GPU, where .cpu() copies"),
}
"""Avalanche strategies that run but silently do nothing on the CPU, and why: refused there,
since a run that reports SI and trains naive would be a false result."""

SUPPLIED = {"self", "model", "optimizer", "criterion", "train_mb_size", "train_epochs",
            "eval_mb_size", "device", "evaluator", "eval_every", "plugins",
            "feature_extractor", "classifier", "generator_strategy"}
"""Constructor arguments the adapter fills itself (ICaRL's feature extractor and classifier
are the run's model split before its last linear layer)."""


def _strategy_class(name: str) -> type:
    import avalanche.training as training
    from avalanche.training.templates import SupervisedTemplate

    resolved = ALIASES.get(name, name)
    candidate = getattr(training, resolved, None)
    if not (inspect.isclass(candidate) and issubclass(candidate, SupervisedTemplate)):
        choices = sorted(
            n
            for n, v in vars(training).items()
            if inspect.isclass(v) and issubclass(v, SupervisedTemplate) and v is not SupervisedTemplate
        )
        raise ScenarioError(
            f"method 'avalanche': strategy {name!r} is not an Avalanche supervised strategy; "
            f"choose from {', '.join(choices)}"
        )
    return candidate


class AvalancheStrategy(ContinualStrategy):
    """:class:`paralab.ContinualStrategy` around an Avalanche strategy.

    :param strategy: the Avalanche class name (``SI`` is an alias of ``SynapticIntelligence``).
    :param lr: learning rate.
    :param optimizer: ``sgd`` or ``adam``.
    :param momentum: SGD momentum.
    :param strategy_options: extra constructor arguments of the strategy (``ewc_lambda``,
        ``mem_size``, ``alpha`` ...).
    :param avalanche_metrics: also evaluate with Avalanche's metrics (see the module doc).
    """

    def __init__(
        self,
        strategy: str = "Naive",
        lr: float = 0.05,
        optimizer: str = "sgd",
        momentum: float = 0.0,
        strategy_options: Mapping[str, Any] | None = None,
        avalanche_metrics: bool = False,
    ) -> None:
        self.strategy_name = strategy
        self.lr = lr
        self.optimizer_name = optimizer
        self.momentum = momentum
        self.strategy_options = dict(strategy_options or {})
        self.avalanche_metrics = avalanche_metrics
        self.stream: Stream | None = None
        self.strategy: Any = None
        self.train_stream: Any = None
        self.test_stream: Any = None
        self.settings: tuple[int, int] | None = None

    def check(self, stream: Stream, dataset: SharedDataset) -> None:
        """The strategy must exist in the installed Avalanche and take every key of
        ``strategy_options``."""
        cls = _strategy_class(self.strategy_name)
        if cls.__name__ in UNSUPPORTED:
            raise ScenarioError(
                f"method 'avalanche': strategy {self.strategy_name!r} "
                f"(avalanche.training.{cls.__name__}) cannot run through the adapter: "
                f"{UNSUPPORTED[cls.__name__]}")
        parameters = inspect.signature(cls.__init__).parameters
        accepted = set(parameters)
        unknown = sorted(set(self.strategy_options) - accepted)
        if unknown:
            raise ScenarioError(
                f"method 'avalanche': strategy_options {unknown} are not arguments of "
                f"avalanche.training.{cls.__name__}; it accepts "
                f"{', '.join(sorted(accepted - {'self', 'model', 'optimizer', 'device'}))}"
            )
        given = set(self.strategy_options) | set(REQUIRED_DEFAULTS.get(cls.__name__, {}))
        missing = sorted(
            name for name, parameter in parameters.items()
            if parameter.default is inspect.Parameter.empty
            and parameter.kind in (parameter.KEYWORD_ONLY, parameter.POSITIONAL_OR_KEYWORD)
            and name not in SUPPLIED and name not in given)
        if missing:
            raise ScenarioError(
                f"method 'avalanche': avalanche.training.{cls.__name__} needs {missing}, "
                f"which have no default; give them in strategy_options")
        if cls.__name__ == "ICaRL" and stream.scenario != "class_incremental":
            raise ScenarioError(
                f"method 'avalanche': avalanche.training.ICaRL learns new classes per "
                f"experience (class-incremental) and uses no task labels; scenario "
                f"{stream.scenario!r} is not one: use scenario = 'class_incremental'")

    def validate(self, run: RunContext) -> None:
        """What needs the built model or the device: ICaRL splits the model before its last
        linear layer; Avalanche's SI does nothing on the CPU (:data:`CPU_NO_OP`)."""
        resolved = _strategy_class(self.strategy_name).__name__
        if resolved in CPU_NO_OP and torch.device(run.device).type == "cpu":
            raise ValueError(f"method 'avalanche': strategy {self.strategy_name!r} "
                             f"{CPU_NO_OP[resolved]}")
        if resolved == "ICaRL":
            split_model(run.model, "method 'avalanche' (ICaRL)")

    def bind(self, stream: Stream) -> None:
        self.stream = stream

    def setup(self, run: RunContext, model: torch.nn.Module) -> None:
        from avalanche.benchmarks.scenarios.dataset_scenario import benchmark_from_datasets

        assert self.stream is not None
        train = [self._dataset(run, e, e.train) for e in self.stream]
        test = [self._dataset(run, e, e.test) for e in self.stream]
        scenario = benchmark_from_datasets(train=train, test=test)
        self.train_stream, self.test_stream = scenario.train_stream, scenario.test_stream
        if self.strategy_name == "ICaRL":
            # Its NCM classifier reads each evaluated experience's classes.
            for avalanche_stream in (self.train_stream, self.test_stream):
                for index, experience in enumerate(self.stream):
                    avalanche_stream[index].classes_in_this_experience = list(experience.classes)

    def _dataset(self, run: RunContext, experience: Experience, rows: torch.Tensor) -> Any:
        from avalanche.benchmarks.utils import _make_taskaware_tensor_classification_dataset

        assert self.stream is not None
        ids = torch.full_like(rows, experience.index)
        x, y = gather(run.dataset, self.stream, rows, ids)
        if self.stream.remapped:
            y = self.stream.target_map.to(y.device)[experience.index, y]
        if self.strategy_name == "GenerativeReplay":
            # Avalanche's VAE decodes to (C, H, W) images; rows travel as 1 x 1 x features
            # (the run's model flattens its input, so it trains and evaluates the same).
            x = x.reshape(len(x), 1, 1, -1)
        return _make_taskaware_tensor_classification_dataset(
            x.cpu(), y.cpu(), task_labels=experience.task, targets=y.cpu().tolist()
        )

    def _build(self, run: RunContext, epochs: int, batch_size: int) -> Any:
        from avalanche.evaluation.metrics import (
            accuracy_metrics,
            bwt_metrics,
            forgetting_metrics,
            forward_transfer_metrics,
        )
        from avalanche.training.plugins import EvaluationPlugin

        cls = _strategy_class(self.strategy_name)
        parameters = [p for p in run.model.parameters() if p.requires_grad]
        if self.optimizer_name == "adam":
            optimizer: torch.optim.Optimizer = torch.optim.Adam(parameters, lr=self.lr)
        else:
            optimizer = torch.optim.SGD(parameters, lr=self.lr, momentum=self.momentum)
        metrics = (
            [
                accuracy_metrics(experience=True, stream=True),
                forgetting_metrics(stream=True),
                bwt_metrics(stream=True),
                forward_transfer_metrics(stream=True),
            ]
            if self.avalanche_metrics
            else []
        )
        options = {**REQUIRED_DEFAULTS.get(cls.__name__, {}), **self.strategy_options}
        accepted = set(inspect.signature(cls.__init__).parameters)
        if "criterion" in accepted and cls.__name__ != "ICaRL":  # ICaRL sets its own loss
            options.setdefault("criterion", torch.nn.CrossEntropyLoss())
        if cls.__name__ == "ICaRL":
            # iCaRL classifies by the nearest mean of exemplars in the features' space: the
            # run's model before its head is the feature extractor, its head trains the
            # features (Avalanche's TrainEvalModel); paralab evaluates strategy.model.
            features, head = split_model(run.model, "method 'avalanche' (ICaRL)")
            options.update(feature_extractor=features, classifier=head)
        else:
            options["model"] = run.model
        if cls.__name__ == "GenerativeReplay" and "generator_strategy" not in options:
            options["generator_strategy"] = self._generator(run, epochs, batch_size, options)
        with warnings.catch_warnings():
            # Avalanche warns that an evaluator without loggers logs nothing: that is the point.
            warnings.filterwarnings("ignore", message="No loggers specified")
            evaluator = EvaluationPlugin(*metrics, loggers=[])
        return cls(
            optimizer=optimizer,
            train_mb_size=batch_size,
            train_epochs=epochs,
            eval_mb_size=run.spec.eval_batch_size,
            device=run.device,
            evaluator=evaluator,
            # Avalanche's forward transfer needs periodic evaluation; 0 = after each experience.
            eval_every=0 if self.avalanche_metrics else -1,
            **options,
        )

    @staticmethod
    def _generator(run: RunContext, epochs: int, batch_size: int,
                   options: dict[str, Any]) -> Any:
        """GenerativeReplay's default generator sized to the run's inputs: Avalanche's own
        default (``MlpVAE((1, 28, 28), nhid=2)``, Adam lr 0.01, weight decay 1e-4, trained
        with ``VAETraining`` and the ``GenerativeReplayPlugin``) fits only 28x28 images."""
        from avalanche.models import MlpVAE
        from avalanche.training import VAETraining
        from avalanche.training.plugins import GenerativeReplayPlugin
        from avalanche.training.supervised.strategy_wrappers import VAE_loss

        shape = (1, 1, int(run.dataset.x[0].numel()))  # as _dataset shapes the rows
        generator = MlpVAE(shape, nhid=2, n_classes=run.dataset.info.n_classes,
                           device=run.device)
        replay = {key: options[key] for key in (
            "replay_size", "increasing_replay_size", "is_weighted_replay",
            "weight_replay_loss_factor", "weight_replay_loss") if key in options}
        return VAETraining(
            model=generator,
            optimizer=torch.optim.Adam(generator.parameters(), lr=0.01, weight_decay=1e-4),
            criterion=VAE_loss, train_mb_size=batch_size, train_epochs=epochs,
            eval_mb_size=run.spec.eval_batch_size, device=run.device,
            plugins=[GenerativeReplayPlugin(**replay)])

    def evaluation_model(self, run: RunContext) -> torch.nn.Module:
        """The model paralab evaluates: Avalanche's ``strategy.model`` once it is not the
        run's (ICaRL's TrainEvalModel classifies by nearest mean of exemplars in eval mode),
        with outputs padded to the dataset's classes."""
        model = getattr(self.strategy, "model", None)
        if model is None or model is run.model:
            return run.model
        return PaddedOutputs(model, run.dataset.info.n_classes)

    def before_experience(self, run: RunContext, experience: Experience) -> None:
        """Avalanche runs its own before-experience callbacks inside ``train``."""

    def train_experience(
        self, run: RunContext, experience: Experience, epochs: int, batch_size: int
    ) -> float:
        if self.strategy is None or self.settings != (epochs, batch_size):
            self.strategy = self._build(run, epochs, batch_size)
            self.settings = (epochs, batch_size)
            if self.avalanche_metrics:
                self._avalanche_eval(run, "initial")
        train = self.train_stream[experience.index]
        if self.strategy_name == "ICaRL":
            self._describe_benchmark(train)
        if self.avalanche_metrics:
            # The periodic evaluation at the end of the experience is on the test stream.
            self.strategy.train(train, eval_streams=[self.test_stream])
        else:
            self.strategy.train(train)
        self._sync_model(run)
        loss = getattr(self.strategy, "loss", None)
        return float(loss) if loss is not None else float("nan")

    def _describe_benchmark(self, experience: Any) -> None:
        """ICaRL reads ``experience.benchmark.n_classes_per_exp`` and ``classes_order``
        (attributes of Avalanche's class-incremental benchmarks that
        ``benchmark_from_datasets`` lacks): give them from the paralab stream."""
        from types import SimpleNamespace

        assert self.stream is not None
        experiences = self.stream.experiences
        experience.benchmark = SimpleNamespace(
            n_classes_per_exp=[len(e.classes) for e in experiences],
            classes_order=[c for e in experiences for c in e.classes])

    def _sync_model(self, run: RunContext) -> None:
        """Avalanche strategies that restart from the initial weights (GDumb,
        FromScratchTraining) put a *copy* in ``strategy.model``: its weights go back into
        the run's model, which paralab evaluates and saves; else paralab would evaluate the
        model as it was when the copy was made (GDumb scored below chance that way)."""
        model = self.strategy.model
        if model is run.model or self.strategy_name == "ICaRL":  # ICaRL's shares its layers
            return
        try:
            run.model.load_state_dict(model.state_dict())
        except RuntimeError as error:
            raise RuntimeError(
                f"method 'avalanche': avalanche.training.{type(self.strategy).__name__} "
                f"replaced the model by one of another architecture, which paralab cannot "
                f"evaluate: {error}") from None

    def after_experience(self, run: RunContext, experience: Experience) -> None:
        if self.avalanche_metrics:
            self._record(run, f"exp{experience.index}", self.strategy.evaluator.get_last_metrics())

    def _avalanche_eval(self, run: RunContext, label: str) -> None:
        self._record(run, label, self.strategy.eval(self.test_stream))

    def _record(self, run: RunContext, label: str, values: dict[str, Any]) -> None:
        recorded = run.state.setdefault("paralab_continual", {}).setdefault("avalanche", {})
        recorded[label] = {
            key: (float(v) if isinstance(v, (int, float)) else v)
            for key, v in values.items()
            if isinstance(v, (int, float))
        }
        for key, short in (
            ("StreamForgetting/eval_phase/test_stream", "avalanche/forgetting"),
            ("StreamBWT/eval_phase/test_stream", "avalanche/backward_transfer"),
            ("StreamForwardTransfer/eval_phase/test_stream", "avalanche/forward_transfer"),
        ):
            if key in values:
                run.record(short, float(values[key]))
        accuracies = [
            float(values[k])
            for k in sorted(values)
            if k.startswith("Top1_Acc_Exp/eval_phase/test_stream/")
        ]
        if accuracies:
            run.record("avalanche/experience_accuracy", accuracies)


class PaddedOutputs(torch.nn.Module):
    """``model``'s outputs with as many columns as the dataset has classes (ICaRL's NCM
    scores only the classes it has means for; the others get a score below every other, finite
    so that the evaluation's cross-entropy is)."""

    def __init__(self, model: torch.nn.Module, classes: int) -> None:
        super().__init__()
        self.model = model
        self.classes = classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.model(x)
        if out.shape[1] >= self.classes:
            return out[:, : self.classes]
        floor = float(out.min().detach()) - 1.0 if out.numel() else 0.0
        pad = out.new_full((out.shape[0], self.classes - out.shape[1]), floor)
        return torch.cat([out, pad], dim=1)
