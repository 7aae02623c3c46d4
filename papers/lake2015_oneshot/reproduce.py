"""Lake, Salakhutdinov and Tenenbaum's 20 one-shot runs, with a ProtoNet trained here.

Trains Conv-4 (64 filters, as Snell et al.) with Prototypical Networks on 60% of the
characters of Omniglot's two small background sets, each character once and its quarter turns
as three more classes (x4, Vinyals et al.'s augmentation), 60-way 1-shot training episodes
with 5 queries per class, Adam 1e-3 halved every 300 outer steps, meta-validation on the 20%
of characters held out for it every 150 steps, and the best phase on validation evaluated:
600 5-way 1-shot episodes of the last 20% of characters, and Lake et al.'s 20 official runs
(20-way 1-shot, characters of the *evaluation* alphabets, never seen in training), each
query predicted from its own run alone. ``quick`` is a smoke test of the pipeline.
"""

from __future__ import annotations

from paralab_fewshot.reproduction import omniglot_spec, run_omniglot


def reproduce(quick: bool) -> dict[str, float]:
    if quick:
        hidden, iterations, ways, episodes, val_every, val_episodes, halving = 8, 6, 10, 50, 3, 20, 0
    else:
        hidden, iterations, ways, episodes, val_every, val_episodes, halving = (
            64, 900, 60, 600, 150, 200, 300)
    spec = omniglot_spec(
        {"name": "protonet", "meta_lr": 0.001},
        shots=1,
        iterations=iterations,
        meta_batch=1,
        queries=5,
        hidden=hidden,
        train_ways=ways,
        eval_episodes=episodes,
        rotations=True,
        val_every=val_every,
        val_episodes=val_episodes,
        lr_halving_every=halving,
    )
    return run_omniglot({"5way1shot": spec})
