"""The Ray backend: client updates as Ray tasks on a local Ray instance give the same global
model as the local simulator for the same seed."""

from __future__ import annotations

import pytest

from tests.federated_helpers import final_parameters, max_difference

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # small models: see conftest


ray = pytest.importorskip("ray")


@pytest.mark.slow
@pytest.mark.parametrize("method", ["fedavg", "scaffold"])
def test_ray_backend_gives_the_local_simulators_model(method: str) -> None:
    """SCAFFOLD's clients also carry their control variates' correction to the Ray tasks."""
    started_here = not ray.is_initialized()
    try:
        options = {"clients": 10, "fraction": 0.3, "rounds": 3, "stragglers": 0.2}
        remote = final_parameters(method=method, backend="ray", ray_num_cpus=2, **options)
        loop = final_parameters(method=method, backend="loop", **options)
        vmap = final_parameters(method=method, backend="vmap", **options)
    finally:
        if started_here and ray.is_initialized():
            ray.shutdown()
    assert max_difference(remote, loop) == 0.0  # the same function on the same batches
    assert max_difference(remote, vmap) < 1e-5
    if method == "scaffold":  # the correction acted: SCAFFOLD's model is not FedAvg's
        fedavg = final_parameters(method="fedavg", backend="loop", **options)
        assert max_difference(loop, fedavg) > 1e-4
