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
}
"""Values for Avalanche constructor arguments that have no default there."""


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
        accepted = set(inspect.signature(cls.__init__).parameters)
        unknown = sorted(set(self.strategy_options) - accepted)
        if unknown:
            raise ScenarioError(
                f"method 'avalanche': strategy_options {unknown} are not arguments of "
                f"avalanche.training.{cls.__name__}; it accepts "
                f"{', '.join(sorted(accepted - {'self', 'model', 'optimizer', 'device'}))}"
            )

    def bind(self, stream: Stream) -> None:
        self.stream = stream

    def setup(self, run: RunContext, model: torch.nn.Module) -> None:
        from avalanche.benchmarks.scenarios.dataset_scenario import benchmark_from_datasets

        assert self.stream is not None
        train = [self._dataset(run, e, e.train) for e in self.stream]
        test = [self._dataset(run, e, e.test) for e in self.stream]
        scenario = benchmark_from_datasets(train=train, test=test)
        self.train_stream, self.test_stream = scenario.train_stream, scenario.test_stream

    def _dataset(self, run: RunContext, experience: Experience, rows: torch.Tensor) -> Any:
        from avalanche.benchmarks.utils import _make_taskaware_tensor_classification_dataset

        assert self.stream is not None
        ids = torch.full_like(rows, experience.index)
        x, y = gather(run.dataset, self.stream, rows, ids)
        if self.stream.remapped:
            y = self.stream.target_map.to(y.device)[experience.index, y]
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
        if "criterion" in accepted:
            options.setdefault("criterion", torch.nn.CrossEntropyLoss())
        with warnings.catch_warnings():
            # Avalanche warns that an evaluator without loggers logs nothing: that is the point.
            warnings.filterwarnings("ignore", message="No loggers specified")
            evaluator = EvaluationPlugin(*metrics, loggers=[])
        return cls(
            model=run.model,
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
        if self.avalanche_metrics:
            # The periodic evaluation at the end of the experience is on the test stream.
            self.strategy.train(self.train_stream[experience.index], eval_streams=[self.test_stream])
        else:
            self.strategy.train(self.train_stream[experience.index])
        loss = getattr(self.strategy, "loss", None)
        return float(loss) if loss is not None else float("nan")

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
