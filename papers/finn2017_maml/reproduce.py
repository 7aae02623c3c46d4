"""MAML on Omniglot, 5-way 1-shot and 5-shot, with paralab_fewshot.

Trains Conv-4 (32 filters here, 64 in the paper; batch statistics as in the paper's code;
a 5-output head) with second-order MAML on 60% of the characters of Omniglot's two small
background sets: inner learning rate 0.4, one inner step in training and three at test
(the paper's settings), Adam 1e-3 outside; tests on 600 episodes of the held-out 20%.
``quick`` shrinks the network and the number of steps (a smoke test of the pipeline, not a
reproduction).
"""

from __future__ import annotations

from paralab_fewshot.reproduction import omniglot_spec, run_omniglot


def reproduce(quick: bool) -> dict[str, float]:
    hidden, iterations, episodes = (8, 5, 50) if quick else (32, 150, 600)
    method = {
        "name": "maml",
        "inner_lr": 0.4,
        "inner_steps": 1,
        "eval_inner_steps": 3,
        "meta_lr": 0.001,
    }
    specs = {
        f"5way{shots}shot": omniglot_spec(
            method,
            shots=shots,
            iterations=iterations,
            meta_batch=4 if quick else 8,
            queries=5,
            hidden=hidden,
            eval_episodes=episodes,
            lake_runs=False,
            out_features=5,
        )
        for shots in (1, 5)
    }
    return run_omniglot(specs)
