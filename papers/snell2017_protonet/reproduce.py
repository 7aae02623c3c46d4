"""Prototypical Networks on Omniglot, 5-way 1-shot and 5-shot, with paralab_fewshot.

Trains Conv-4 (32 filters here, 64 in the paper) with ProtoNets on 60% of the characters
of Omniglot's two small background sets, tests on 600 episodes of the held-out 20% and on
Lake et al.'s 20-way one-shot runs. ``quick`` shrinks the network and the number of steps
(a smoke test of the pipeline, not a reproduction).
"""

from __future__ import annotations

from paralab_fewshot.reproduction import omniglot_spec, run_omniglot


def reproduce(quick: bool) -> dict[str, float]:
    hidden, iterations, episodes = (8, 5, 50) if quick else (32, 150, 600)
    specs = {
        f"5way{shots}shot": omniglot_spec(
            {"name": "protonet", "meta_lr": 0.001},
            shots=shots,
            iterations=iterations,
            meta_batch=4,
            queries=5,
            hidden=hidden,
            train_ways=0 if quick else 10,
            eval_episodes=episodes,
        )
        for shots in (1, 5)
    }
    return run_omniglot(specs)
