"""The core gradient methods: the fused Adam takes the same steps as torch's default Adam."""

from __future__ import annotations

import pytest
import torch

from paralab.methods import Adam, adam


def _trajectory(optimizer_factory, steps: int = 20) -> list[torch.Tensor]:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
    optimizer = optimizer_factory(model.parameters())
    generator = torch.Generator().manual_seed(1)
    for _ in range(steps):
        x = torch.randn(8, 6, generator=generator)
        y = torch.randint(0, 3, (8,), generator=generator)
        optimizer.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
    return [p.detach().clone() for p in model.parameters()]


@pytest.mark.parametrize("weight_decay", [0.0, 0.01])
def test_fused_adam_takes_the_same_steps_as_torch_default(weight_decay: float) -> None:
    ours = _trajectory(lambda p: adam(p, lr=0.01, weight_decay=weight_decay))
    reference = _trajectory(
        lambda p: torch.optim.Adam(p, lr=0.01, weight_decay=weight_decay, foreach=False)
    )
    for mine, theirs in zip(ours, reference):
        torch.testing.assert_close(mine, theirs, rtol=1e-5, atol=1e-6)
    assert any((mine != _trajectory(lambda p: adam(p, lr=0.02))[i]).any()
               for i, mine in enumerate(ours))  # the learning rate is honoured


def test_adam_is_fused_on_cpu_float_parameters_only() -> None:
    real = [torch.nn.Parameter(torch.zeros(3))]
    assert adam(real, lr=0.1).defaults["fused"] is True
    complex_ = [torch.nn.Parameter(torch.zeros(3, dtype=torch.complex64))]
    assert not adam(complex_, lr=0.1).defaults["fused"]  # torch's default path instead
    method = Adam(lr=0.1)
    assert method.make_optimizer(real).defaults["fused"] is True
