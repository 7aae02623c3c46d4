"""MAML on Omniglot, 5-way 1-shot and 5-shot, with paralab_fewshot.

Trains Conv-4 (64 filters, as the paper; batch statistics as in the paper's code; a 5-output
head) with second-order MAML on 60% of the characters of Omniglot's two small background sets
(each character once, x4 with rotations; the phase best on meta-validation is tested): inner learning rate 0.4, one inner step in training and three at test
(the paper's settings), Adam 1e-3 outside; tests on 600 episodes of the held-out 20%.
``quick`` shrinks the network and the number of steps (a smoke test of the pipeline, not a
reproduction).
"""

from __future__ import annotations

from paralab_fewshot.reproduction import omniglot_spec, run_omniglot


def reproduce(quick: bool) -> dict[str, float]:
    method = {
        "name": "maml",
        "inner_lr": 0.4,
        "inner_steps": 1,
        "eval_inner_steps": 3,
        "meta_lr": 0.001,
    }
    if quick:
        return run_omniglot({
            f"5way{shots}shot": omniglot_spec(
                method, shots=shots, iterations=5, meta_batch=4, queries=5, hidden=8,
                eval_episodes=50, lake_runs=False, out_features=5)
            for shots in (1, 5)
        })
    # The paper's tasks: K support and K query drawings a class (its data generator draws 2K),
    # 32 tasks a meta-batch for 1-shot; 16 for 5-shot here (five times the drawings a task).
    return run_omniglot({
        f"5way{shots}shot": omniglot_spec(
            method, shots=shots, iterations=400 if shots == 1 else 200,
            meta_batch=32 if shots == 1 else 16, queries=shots, hidden=64, eval_episodes=600,
            lake_runs=False, out_features=5, rotations=True,
            val_every=100 if shots == 1 else 50, val_episodes=100)
        for shots in (1, 5)
    })
