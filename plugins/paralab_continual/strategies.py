"""Continual strategies, native: a base training loop plus strategy plugins.

Every strategy implements :class:`paralab.ContinualStrategy` (the interface the protocol drives)
and is a :class:`paralab.OptimizerMethod`, so its loss is the cross-entropy plus the spec's
loss terms (``run.extra_loss``: a fairness penalty, a semantic loss), and it trains whatever
model the spec names (an MLP, a CNN, a quantum classifier from another plugin). The protocol
calls ``check`` and ``bind`` once the stream is built, ``setup``, then per experience
``before_experience`` -> ``train_experience`` -> ``after_experience``.

What a strategy does against forgetting lives in its **plugins**
(:mod:`paralab_continual.composition`): ``ewc`` is the base loop with the ``ewc`` plugin,
``replay`` with the ``replay`` plugin, and any strategy takes more through its ``plugins``
option (``naive`` + ``[replay, ewc]`` is replay and EWC); the loop calls every plugin at each
callback point, in list order, so no consolidation is skipped.

Options are declared, with their constraints, in ``paralab_continual/__init__.py``; the spec
check rejects bad values before anything is built, so the constructors trust their
arguments. What depends on the stream (``heads = 'multi'`` without task labels, a memory
larger than the data) and the plugins' names and options are checked in
:meth:`ContinualStrategy.check`, before any run folder.

Why native: each experience's rows are gathered from the shared tensors once (its transform
applied once, on the device), then minibatches are slices of a permutation: no Dataset, no
DataLoader, no collate.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch

from paralab import Batch, OptimizerMethod, OptionError, adam
from paralab import ContinualStrategy as StrategyInterface
from paralab import clear_gradients as clear_optimizer_gradients
from paralab_continual import composition
from paralab_continual.bic import BiCPlugin
from paralab_continual.composition import FIELD
from paralab_continual.dark import DERPlugin
from paralab_continual.gdumb import GDumbPlugin
from paralab_continual.icarl import ICaRLPlugin
from paralab_continual.regularization import EWCPlugin, LwFPlugin, QuadraticPenalty, SIPlugin
from paralab_continual.rehearsal import AGEMPlugin, ERACEPlugin, ReplayPlugin
from paralab_continual.rows import fused_sgd_step, gather
from paralab_continual.scenarios import Experience, ScenarioError, Stream

if TYPE_CHECKING:
    from collections.abc import Iterable

    from paralab import RunContext, SharedDataset

__all__ = ["AGEM", "DER", "ERACE", "EWC", "SI", "BiC", "GDumb", "ICaRL", "ContinualStrategy", "Cumulative", "Joint", "LwF", "Naive",
           "OnlineEWC", "QuadraticPenalty", "Replay", "fused_sgd_step", "gather"]


class ContinualStrategy(OptimizerMethod, StrategyInterface):
    """Fine-tuning on each experience in turn: the base every strategy refines.

    A strategy's constructor names its own options, with their defaults, and passes the rest
    (``**options``) on to its base, down to this one: the options declared for the method are
    that chain's parameters, names and defaults (the conformance kit checks it). A shared base
    between a strategy and this class takes its arguments without defaults, so that the
    strategy alone says what they default to (``_Quadratic``, ``_FisherPenalty``).

    :param lr: learning rate.
    :param optimizer: ``sgd`` or ``adam``.
    :param momentum: SGD momentum.
    :param weight_decay: L2 weight decay of the optimizer.
    :param reset_optimizer: start each experience with fresh optimizer state (Avalanche does).
    :param heads: ``multi`` trains with the output units masked to the experience's classes
        (multi-head), which needs task labels at test time; ``shared`` trains all units;
        ``auto`` is ``multi`` in a task-incremental stream and ``shared`` otherwise.
    :param plugins: strategy plugins (``[{name = "replay", buffer_size = 200}, ...]``), called
        after the strategy's own plugin, in list order, at every callback point.
    """

    name = "naive"
    own_count = 0

    def __init__(
        self,
        lr: float = 0.05,
        optimizer: str = "sgd",
        momentum: float = 0.0,
        weight_decay: float = 0.0,
        reset_optimizer: bool = True,
        heads: str = "auto",
        plugins: Sequence[Any] = (),
    ) -> None:
        super().__init__(lr, weight_decay)
        self.plugin_specs = [dict(entry) if isinstance(entry, dict) else entry for entry in plugins]
        self.plugins: list[Any] | None = None  # resolved on first use (check, setup)
        self.callbacks: dict[str, list[Any]] = {}
        self.optimizer_name = optimizer
        self.momentum = momentum
        self.reset_optimizer = reset_optimizer
        self.heads = heads
        self.stream: Stream | None = None
        self.train_masked = False
        self.parameters: list[torch.nn.Parameter] = []
        self.batch_size = 0  # the protocol's, set by train_experience
        self.step_hook: Any = None
        """Online protocols: called after each step with the incoming rows' hits (predicted
        right before the step trained on them, a tensor) and their count."""

    # ------------------------------------------------------------------------ plugins

    def make_plugins(self) -> list[Any]:
        """The strategy's own plugins (none for the base loop); subclasses say which."""
        return []

    def resolve_plugins(self) -> list[Any]:
        """The plugins, own first, then those the ``plugins`` option names (resolved through
        the registry once; an unknown name or a bad option is an :class:`paralab.OptionError`
        naming ``method.plugins[i]``)."""
        if self.plugins is None:
            plugins = [*self.make_plugins(), *composition.resolve(self.plugin_specs)]
            self.own_count = len(plugins) - len(self.plugin_specs)
            self.plugins = plugins
            self.callbacks = composition.callback_table(plugins)
        return self.plugins

    @property
    def plugin(self) -> Any:
        """The strategy's own plugin (``ewc``'s EWC plugin); None for the base loop."""
        plugins = self.resolve_plugins()
        return plugins[0] if self.own_count else None

    def where(self, plugin: Any) -> str:
        """How an error names ``plugin``: ``method 'replay'`` for the strategy's own, else
        ``method 'naive', plugin 'replay' (method.plugins[0])``."""
        plugins = self.resolve_plugins()
        position = next(i for i, p in enumerate(plugins) if p is plugin)
        if position < self.own_count:
            return f"method {self.name!r}"
        listed = position - self.own_count
        return (f"method {self.name!r}, plugin {getattr(plugin, 'name', '?')!r} "
                f"(method.plugins[{listed}])")

    def plugin_names(self) -> list[str]:
        return composition.describe(self.resolve_plugins())

    def memory_bytes(self) -> int:
        """What the plugins keep between experiences (memories, importances, teachers)."""
        return composition.memory_bytes(self.resolve_plugins())

    def memory_report(self, dataset: SharedDataset) -> dict[str, int]:
        """The memory figures of :mod:`paralab_continual.memory`: bytes kept, and the
        rehearsal memory's rows and their bytes as copies of the examples."""
        rows = 0
        for plugin in self.resolve_plugins():
            count = getattr(plugin, "buffer_rows", None)
            rows += int(count()) if callable(count) else 0
        per_row = dataset.x[0].numel() * dataset.x.element_size() + dataset.y.element_size()
        return {"memory/strategy_bytes": self.memory_bytes(), "memory/buffer_rows": rows,
                "memory/buffer_bytes": rows * int(per_row)}

    def validate(self, run: RunContext) -> None:
        """Resolve the plugins (the host calls this before any run folder); a checkpointed
        run needs every plugin's state."""
        plugins = self.resolve_plugins()
        if run.spec.checkpoint_every:
            lacking = [getattr(p, "name", type(p).__name__) for p in plugins
                       if not callable(getattr(p, "state_dict", None))
                       or not callable(getattr(p, "load_state_dict", None))]
            if lacking:
                raise OptionError(FIELD, (
                    f"checkpoint_every = {run.spec.checkpoint_every}: strategy plugins "
                    f"{lacking} keep no state_dict()/load_state_dict(), so a resumed run "
                    f"would lose what they learned; set checkpoint_every = 0"))

    # ------------------------------------------------------------------------- checking

    def check(self, stream: Stream, dataset: SharedDataset) -> None:
        """Raise a clear error, before training, when this strategy cannot run on ``stream``."""
        if self.heads == "multi" and not stream.has_task_labels:
            raise ScenarioError(
                f"method {self.name!r}: heads = 'multi' needs task labels at test time, but "
                f"scenario {stream.scenario!r} has none; use scenario = 'task_incremental' or "
                "heads = 'shared'"
            )
        self.resolve_plugins()
        for callback in self.callbacks["check"]:
            callback(self, stream, dataset)

    # ------------------------------------------------------------------------ lifecycle

    def make_optimizer(self, parameters: Iterable[torch.nn.Parameter]) -> torch.optim.Optimizer:
        if self.optimizer_name == "adam":
            return adam(parameters, lr=self.lr, weight_decay=self.weight_decay)
        return torch.optim.SGD(
            parameters, lr=self.lr, momentum=self.momentum, weight_decay=self.weight_decay
        )

    def setup(self, run: RunContext | None, model: torch.nn.Module) -> None:
        self.parameters = [p for p in model.parameters() if p.requires_grad]
        self.optimizer = self.make_optimizer(self.parameters)
        self.resolve_plugins()
        for callback in self.callbacks["setup"]:
            callback(self, run, model)

    def state_dict(self) -> dict[str, Any]:
        """What the strategy learned between experiences (its optimizer's state, and what
        each strategy adds: penalty terms, a teacher, memories), for the protocol's
        checkpoints; tensors and plain data only. Checkpoints close experiences, so what lives
        only inside one (SI's running path integral, a gathered replay batch) is not in it."""
        plugins = self.resolve_plugins()
        state = super().state_dict()
        for plugin in plugins[: self.own_count]:  # the strategy's own: flat, as ever
            state.update(plugin.state_dict())
        state["plugins"] = [p.state_dict() if callable(getattr(p, "state_dict", None)) else {}
                            for p in plugins[self.own_count:]]
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Take back :meth:`state_dict` after :meth:`setup` (and after the model's weights)."""
        plugins = self.resolve_plugins()
        state = dict(state)
        listed = state.pop("plugins", [])
        super().load_state_dict(state)
        for plugin in plugins[: self.own_count]:
            plugin.load_state_dict(state, self)
        for plugin, plugin_state in zip(plugins[self.own_count:], listed):
            if callable(getattr(plugin, "load_state_dict", None)):
                plugin.load_state_dict(plugin_state, self)

    @property
    def device(self) -> torch.device:
        """Where the model (and so the run's data) lives: checkpoints are read on the CPU."""
        return self.parameters[0].device if self.parameters else torch.device("cpu")

    def bind(self, stream: Stream) -> None:
        """Remember the stream and decide how training reads the outputs."""
        self.stream = stream
        multi = self.heads == "multi" or (self.heads == "auto" and stream.has_task_labels)
        self.train_masked = stream.remapped or (multi and stream.masked)

    def before_experience(self, run: RunContext, experience: Experience) -> None:
        if self.reset_optimizer and experience.index > 0:
            self.optimizer = self.make_optimizer(self.parameters)
        for callback in self.callbacks["before_experience"]:
            callback(self, run, experience)

    def after_experience(self, run: RunContext, experience: Experience) -> None:
        """Consolidate what was learned (importances, memories, a teacher): every plugin's."""
        for callback in self.callbacks["after_experience"]:
            callback(self, run, experience)

    # ------------------------------------------------------------------------- training

    def training_rows(self, experience: Experience) -> tuple[torch.Tensor, torch.Tensor]:
        """The shared-dataset rows to train on in ``experience`` and their experience ids."""
        rows = experience.train
        return rows, torch.full_like(rows, experience.index)

    def train_experience(
        self, run: RunContext, experience: Experience, epochs: int, batch_size: int
    ) -> float | None:
        """Minibatch epochs over the experience's pre-gathered rows; returns the mean loss
        (None: no rows to train on)."""
        assert self.stream is not None, "bind(stream) before training"
        self.batch_size = batch_size  # what plugins sized "as the training batch" read
        model = run.model
        model.train()
        rows, ids = self.training_rows(experience)
        x_all, y_all = gather(run.dataset, self.stream, rows, ids)
        n = len(rows)
        losses: list[torch.Tensor] = []
        for _ in range(epochs):
            # One gather per epoch; the minibatches are then contiguous slices (views).
            order = torch.randperm(n, generator=run.generator).to(x_all.device)
            x_epoch, y_epoch, rows_epoch, ids_epoch = x_all[order], y_all[order], rows[order], ids[order]
            for start in range(0, n, batch_size):
                stop = start + batch_size
                losses.append(
                    self.train_step(
                        run, model, x_epoch[start:stop], y_epoch[start:stop],
                        rows_epoch[start:stop], ids_epoch[start:stop],
                    )
                )
        if not losses:  # nothing to train on (joint after its offline phase)
            return None
        return float(torch.stack(losses).sum()) / len(losses)

    def augment(
        self,
        run: RunContext,
        x: torch.Tensor,
        y: torch.Tensor,
        rows: torch.Tensor,
        ids: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """The batch to train on: each plugin's ``augment`` in turn (replay appends memory
        rows here)."""
        for callback in self.callbacks["augment"]:
            x, y, rows, ids = callback(self, run, x, y, rows, ids)
        return x, y, rows, ids

    def forward(
        self, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, ids: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits and targets as training reads them (masked/relabelled when it must)."""
        return self.read_outputs(model(x), y, ids)

    def read_outputs(
        self, logits: torch.Tensor, y: torch.Tensor, ids: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The model's raw ``logits`` as training reads them, with their targets."""
        if self.train_masked:
            assert self.stream is not None
            return self.stream.read_outputs(logits, y, ids)
        return logits, y

    def regularizer(self, run: RunContext | None, x: torch.Tensor, raw: torch.Tensor,
                    model: torch.nn.Module) -> torch.Tensor | None:
        """The plugins' terms added to the batch loss, from the inputs and the model's raw
        (unmasked) outputs, such as LwF's distillation; None: nothing."""
        total = None
        for callback in self.callbacks["regularizer"]:
            term = callback(self, run, x, raw, model)
            if term is not None:
                total = term if total is None else total + term
        return total

    def train_step(
        self,
        run: RunContext,
        model: torch.nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        rows: torch.Tensor,
        ids: torch.Tensor,
    ) -> torch.Tensor:
        """One optimizer step; returns the batch loss as a tensor (no device sync)."""
        for callback in self.callbacks["before_step"]:
            callback(self, run, model, x, y, rows, ids)
        incoming = len(x)
        x, y, rows, ids = self.augment(run, x, y, rows, ids)
        raw = model(x)
        logits, targets = self.read_outputs(raw, y, ids)
        if self.step_hook is not None:  # test-then-train: the prediction before the update
            hits = (logits[:incoming].detach().argmax(1) == targets[:incoming]).sum()
        objective = None
        for callback in self.callbacks["objective"]:  # at most one (callback_table checks)
            objective = callback(self, run, ids)
        loss = self.loss(run, Batch(x, targets, rows, logits, model, run, objective=objective))
        extra = self.regularizer(run, x, raw, model)
        if extra is not None:
            loss = loss + extra
        self.clear_gradients()
        loss.backward()
        self.after_backward(run, model)
        self.apply_update()
        self.after_step(run, model)
        if self.step_hook is not None:
            self.step_hook(self, hits, incoming)
        return loss.detach()

    def clear_gradients(self) -> None:
        """``optimizer.zero_grad(set_to_none=True)`` without its profiler hooks."""
        assert self.optimizer is not None
        clear_optimizer_gradients(self.optimizer)

    def apply_update(self) -> None:
        """The optimizer step. Plain SGD (no momentum) is one fused ``_foreach_add_`` over the
        parameters: the same update as ``torch.optim.SGD`` (a test checks it) without its
        per-step dispatch overhead, which is a third of a small model's step on a CPU."""
        assert self.optimizer is not None
        if self.optimizer_name != "sgd" or self.momentum:
            self.optimizer.step()
            return
        fused_sgd_step(self.parameters, self.lr, self.weight_decay)

    def after_backward(self, run: RunContext, model: torch.nn.Module) -> None:
        """Change the gradients before the optimizer applies them (penalties, projections)."""
        for callback in self.callbacks["after_backward"]:
            callback(self, run, model)

    def after_step(self, run: RunContext, model: torch.nn.Module) -> None:
        """Observe the parameters after the optimizer step (SI's path integral)."""
        for callback in self.callbacks["after_step"]:
            callback(self, run, model)

    def describe(self) -> dict[str, Any]:
        return {"strategy": self.name, "optimizer": self.optimizer_name, "lr": self.lr,
                "plugins": self.plugin_names()}


class Naive(ContinualStrategy):
    """Fine-tuning: train on each experience in turn, nothing against forgetting (lower bound);
    with ``plugins``, the base loop of any composition."""

    name = "naive"


class Cumulative(ContinualStrategy):
    """Train on the union of every experience seen so far at each experience."""

    name = "cumulative"

    def training_rows(self, experience: Experience) -> tuple[torch.Tensor, torch.Tensor]:
        assert self.stream is not None
        seen = self.stream.experiences[: experience.index + 1]
        rows = torch.cat([e.train for e in seen])
        ids = torch.cat([torch.full_like(e.train, e.index) for e in seen])
        return rows, ids


class Joint(ContinualStrategy):
    """Offline joint training, the upper bound papers report: in the first experience's
    phase the model trains ``epochs`` over the union of **every** experience of the stream,
    then nothing more (its later experiences train no rows), so every row of R is the model
    trained on all the data. Forgetting is 0 by construction and forward transfer means
    nothing here; ``cumulative`` is the experience-by-experience union."""

    name = "joint"

    def training_rows(self, experience: Experience) -> tuple[torch.Tensor, torch.Tensor]:
        assert self.stream is not None
        if experience.index > 0:  # everything was learned offline, in the first phase
            empty = experience.train[:0]
            return empty, empty.clone()
        every = self.stream.experiences
        rows = torch.cat([e.train for e in every])
        ids = torch.cat([torch.full_like(e.train, e.index) for e in every])
        return rows, ids


class _WithPlugin(ContinualStrategy):
    """A named strategy: the base loop with one plugin of its own (built by ``plugin_from``
    from the strategy's own options), then any the ``plugins`` option lists."""

    _own_options: dict[str, Any]

    @classmethod
    def plugin_from(cls, **own: Any) -> Any:
        """The plugin of this strategy from its own options (also what ``plugins = [{name =
        ...}]`` builds)."""
        raise NotImplementedError

    def make_plugins(self) -> list[Any]:
        return [self.plugin_from(**self._own_options)]


class EWC(_WithPlugin):
    """Elastic weight consolidation (Kirkpatrick et al. 2017), Avalanche's formulation: the
    penalty is ``ewc_lambda * sum_e sum_k F_e,k (theta_k - theta*_e,k)^2`` (``mode =
    'separate'``) or one decayed penalty (``mode = 'online'``, as ``online_ewc``)."""

    name = "ewc"

    def __init__(self, ewc_lambda: float = 100.0, mode: str = "separate", decay: float = 1.0,
                 fisher_batch_size: int = 0, **options: Any) -> None:
        super().__init__(**options)
        self._own_options = {"ewc_lambda": ewc_lambda, "mode": mode, "decay": decay,
                             "fisher_batch_size": fisher_batch_size}

    @classmethod
    def plugin_from(cls, **own: Any) -> EWCPlugin:
        return EWCPlugin(**own)


class OnlineEWC(_WithPlugin):
    """Online EWC (Schwarz et al. 2018): one running Fisher, decayed, around the newest weights."""

    name = "online_ewc"

    def __init__(self, ewc_lambda: float = 100.0, decay: float = 1.0,
                 fisher_batch_size: int = 0, **options: Any) -> None:
        super().__init__(**options)
        self._own_options = {"ewc_lambda": ewc_lambda, "decay": decay,
                             "fisher_batch_size": fisher_batch_size}

    @classmethod
    def plugin_from(cls, **own: Any) -> EWCPlugin:
        plugin = EWCPlugin(mode="online", **own)
        plugin.name = "online_ewc"
        return plugin


class SI(_WithPlugin):
    """Synaptic intelligence (Zenke et al. 2017): see :class:`~paralab_continual.
    regularization.SIPlugin`."""

    name = "si"

    def __init__(self, si_lambda: float = 1.0, damping: float = 0.1, **options: Any) -> None:
        super().__init__(**options)
        self._own_options = {"si_lambda": si_lambda, "damping": damping}

    @classmethod
    def plugin_from(cls, **own: Any) -> SIPlugin:
        return SIPlugin(**own)


class LwF(_WithPlugin):
    """Learning without forgetting (Li and Hoiem 2016), as in Avalanche: see
    :class:`~paralab_continual.regularization.LwFPlugin`."""

    name = "lwf"

    def __init__(self, alpha: float = 1.0, temperature: float = 2.0, **options: Any) -> None:
        super().__init__(**options)
        self._own_options = {"alpha": alpha, "temperature": temperature}

    @classmethod
    def plugin_from(cls, **own: Any) -> LwFPlugin:
        return LwFPlugin(**own)


class Replay(_WithPlugin):
    """Experience replay from a memory of indices: see :class:`~paralab_continual.rehearsal.
    ReplayPlugin`."""

    name = "replay"

    def __init__(self, buffer_size: int = 200, policy: str = "reservoir",
                 memory_batch_size: int = 0, **options: Any) -> None:
        super().__init__(**options)
        self._own_options = {"buffer_size": buffer_size, "policy": policy,
                             "memory_batch_size": memory_batch_size}

    @classmethod
    def plugin_from(cls, **own: Any) -> ReplayPlugin:
        return ReplayPlugin(**own)


class AGEM(_WithPlugin):
    """Averaged gradient episodic memory (Chaudhry et al. 2019): see
    :class:`~paralab_continual.rehearsal.AGEMPlugin`."""

    name = "agem"

    def __init__(self, patterns_per_experience: int = 100, sample_size: int = 64,
                 **options: Any) -> None:
        super().__init__(**options)
        self._own_options = {"patterns_per_experience": patterns_per_experience,
                             "sample_size": sample_size}

    @classmethod
    def plugin_from(cls, **own: Any) -> AGEMPlugin:
        return AGEMPlugin(**own)


class DER(_WithPlugin):
    """Dark experience replay, DER (``beta = 0``) and DER++ (Buzzega et al. 2020): see
    :class:`~paralab_continual.dark.DERPlugin`."""

    name = "der"

    def __init__(self, buffer_size: int = 200, alpha: float = 0.1, beta: float = 0.5,
                 memory_batch_size: int = 0, **options: Any) -> None:
        super().__init__(**options)
        self._own_options = {"buffer_size": buffer_size, "alpha": alpha, "beta": beta,
                             "memory_batch_size": memory_batch_size}

    @classmethod
    def plugin_from(cls, **own: Any) -> DERPlugin:
        return DERPlugin(**own)


class ERACE(_WithPlugin):
    """Experience replay with asymmetric cross-entropy, ER-ACE (Caccia et al. 2022): see
    :class:`~paralab_continual.rehearsal.ERACEPlugin`."""

    name = "er_ace"

    def __init__(self, buffer_size: int = 200, memory_batch_size: int = 10,
                 **options: Any) -> None:
        super().__init__(**options)
        self._own_options = {"buffer_size": buffer_size, "memory_batch_size": memory_batch_size}

    @classmethod
    def plugin_from(cls, **own: Any) -> ERACEPlugin:
        return ERACEPlugin(**own)


class GDumb(_WithPlugin):
    """GDumb (Prabhu et al. 2020): at each experience, the model restarts from its initial
    weights and trains on the class-balanced memory alone (see
    :class:`~paralab_continual.gdumb.GDumbPlugin`)."""

    name = "gdumb"

    def __init__(self, buffer_size: int = 200, **options: Any) -> None:
        super().__init__(**options)
        self._own_options = {"buffer_size": buffer_size}

    @classmethod
    def plugin_from(cls, **own: Any) -> GDumbPlugin:
        return GDumbPlugin(**own)

    def training_rows(self, experience: Experience) -> tuple[torch.Tensor, torch.Tensor]:
        buffer = self.plugin.buffer
        return buffer.indices, buffer.experiences


class ICaRL(_WithPlugin):
    """iCaRL (Rebuffi et al. 2017): herding exemplars, distillation, nearest-mean-of-exemplars
    classification (see :class:`~paralab_continual.icarl.ICaRLPlugin`)."""

    name = "icarl"

    def __init__(self, memory_size: int = 2000, **options: Any) -> None:
        super().__init__(**options)
        self._own_options = {"memory_size": memory_size}

    @classmethod
    def plugin_from(cls, **own: Any) -> ICaRLPlugin:
        return ICaRLPlugin(**own)

    def training_rows(self, experience: Experience) -> tuple[torch.Tensor, torch.Tensor]:
        rows, ids = super().training_rows(experience)
        memory_rows, memory_ids = self.plugin.exemplars()
        return (torch.cat([rows, memory_rows.to(rows.device)]),
                torch.cat([ids, memory_ids.to(ids.device)]))

    def evaluation_model(self, run: RunContext) -> torch.nn.Module:
        """What the protocol evaluates: the nearest mean of exemplars once there are any."""
        return self.plugin.classifier(run.model) or run.model


class BiC(_WithPlugin):
    """BiC (Wu et al. 2019): replay with distillation and a bias correction of the newest
    classes' logits (see :class:`~paralab_continual.bic.BiCPlugin`)."""

    name = "bic"

    def __init__(self, memory_size: int = 500, val_fraction: float = 0.1,
                 temperature: float = 2.0, bias_lr: float = 1.0, bias_steps: int = 100,
                 **options: Any) -> None:
        super().__init__(**options)
        self._own_options = {"memory_size": memory_size, "val_fraction": val_fraction,
                             "temperature": temperature, "bias_lr": bias_lr,
                             "bias_steps": bias_steps}

    @classmethod
    def plugin_from(cls, **own: Any) -> BiCPlugin:
        return BiCPlugin(**own)

    def training_rows(self, experience: Experience) -> tuple[torch.Tensor, torch.Tensor]:
        """The experience's rows and the exemplars, less the validation rows."""
        return self.plugin.train_rows, self.plugin.train_ids

    def evaluation_model(self, run: RunContext) -> torch.nn.Module:
        """The model with every fitted bias correction applied."""
        return self.plugin.classifier(run.model)
