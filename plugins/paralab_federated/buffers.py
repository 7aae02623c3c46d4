"""The server's aggregate of model buffers: batch-norm running statistics and counters.

Buffers are not trained by gradients, so they are not in a client's delta; without this
module the global model would keep its initial statistics (mean 0, variance 1) and be
evaluated with them. Each client starts a round from the global buffers and sends back the
buffers it ended with; the server then sets:

* floating buffers (``running_mean``, ``running_var``) to the example-weighted mean of the
  clients' values, the weights FedAvg gives their deltas;
* integer buffers (``num_batches_tracked``) to the global value plus the *sum* of the clients'
  increments: counters count, so the global model has tracked every client's batches (what
  batch norm's cumulative average, ``momentum=None``, divides by).

The buffers bypass the update middleware (they are not in :class:`paralab.Update`), which is
why the protocol refuses a model with buffers under middleware that acts on client updates
(DP-FedAvg would leave the statistics unclipped and noiseless, secure aggregation unmasked).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

Params = dict[str, torch.Tensor]


def aggregate_buffers(global_buffers: Params, clients: Mapping[int, Params],
                      weights: Mapping[int, float]) -> Params:
    """The next global buffers from the clients' buffers after training (see the module)."""
    if not clients:
        return dict(global_buffers)
    ids = sorted(clients)
    total = float(sum(weights[k] for k in ids))
    if total <= 0:
        raise ValueError(f"the clients' weights sum to {total}; weights must be positive")
    result: Params = {}
    for name, start in global_buffers.items():
        values = torch.stack([clients[k][name].to(start.device) for k in ids])
        if start.is_floating_point() or start.is_complex():
            share = torch.tensor([weights[k] / total for k in ids], dtype=values.dtype,
                                 device=values.device)
            result[name] = torch.tensordot(share, values, dims=1)
        else:
            result[name] = start + (values - start.unsqueeze(0)).sum(0).to(start.dtype)
    return result
