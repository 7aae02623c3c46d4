"""Prototypical Networks on Omniglot, 5-way 1-shot and 5-shot, with paralab_fewshot.

Trains Conv-4 (64 filters, as the paper) with ProtoNets on 60% of the characters of
Omniglot's two small background sets (each character once, x4 with rotations), selects the
phase best on meta-validation (the next 20%), tests on 600 episodes of the last 20% and on
Lake et al.'s 20-way one-shot runs. ``quick`` shrinks the network and the number of steps
(a smoke test of the pipeline, not a reproduction).
"""

from __future__ import annotations

from paralab_fewshot.reproduction import omniglot_spec, run_omniglot


def reproduce(quick: bool) -> dict[str, float]:
    if quick:
        return run_omniglot({
            f"5way{shots}shot": omniglot_spec(
                {"name": "protonet", "meta_lr": 0.001}, shots=shots, iterations=5,
                meta_batch=4, queries=5, hidden=8, eval_episodes=50)
            for shots in (1, 5)
        })
    # Snell et al.: 60-way training episodes for both shot counts; 5-shot here trains 20-way
    # (ten images a class: 60-way would take three times as long on this CPU).
    return run_omniglot({
        f"5way{shots}shot": omniglot_spec(
            {"name": "protonet", "meta_lr": 0.001}, shots=shots, iterations=900, meta_batch=1,
            queries=5, hidden=64, train_ways=60 if shots == 1 else 20, eval_episodes=600,
            rotations=True, val_every=150, val_episodes=200, lr_halving_every=300)
        for shots in (1, 5)
    })
