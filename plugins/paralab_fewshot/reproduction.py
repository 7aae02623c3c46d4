"""Omniglot reproductions shared by papers/snell2017_protonet and papers/finn2017_maml.

What we have is not what the papers had: the two *small* background sets (8 alphabets, 242
characters, 20 drawings each, Greek and Latin in both sets hence 40) instead of 1,623
characters with rotations as extra classes, and a CPU. So meta-training uses 60% of the
242 characters (seeded class split), meta-test episodes come from the 20% of characters held
out, and Lake et al.'s 20 one-shot runs (characters of the *evaluation* alphabets, never seen)
give a 20-way 1-shot figure. Networks are the papers' Conv-4 at the width and number of outer
steps given by the caller. Omniglot is loaded with each character once (Greek and Latin are in
both small sets) and, with ``rotations``, each character's quarter turns as three more classes
(Vinyals et al.'s and Snell et al.'s augmentation), kept in the same split as the character.
"""

from __future__ import annotations

from typing import Any

SPLIT = [0.6, 0.2, 0.2]


def omniglot_spec(
    method: dict[str, Any],
    *,
    shots: int,
    iterations: int,
    meta_batch: int,
    queries: int,
    hidden: int,
    train_ways: int = 0,
    eval_episodes: int = 600,
    lake_runs: bool = True,
    out_features: int = 0,
    rotations: bool = False,
    val_every: int = 0,
    val_episodes: int = 0,
    lr_halving_every: int = 0,
) -> dict[str, Any]:
    """An experiment spec: ``method`` on 5-way ``shots``-shot Omniglot episodes with Conv-4.

    With ``val_every`` and ``val_episodes``, meta-validation runs every ``val_every`` outer
    steps and meta-test evaluates the phase best on it (``select = "auto"``)."""
    dataset: str | dict[str, Any] = {"name": "omniglot", "rotations": True} if rotations \
        else "omniglot"
    return {
        "name": f"omniglot-{method['name']}-{shots}shot",
        "dataset": dataset,
        "model": {"name": "conv4", "hidden": hidden, "out_features": out_features},
        "protocol": {
            "name": "episodic",
            "ways": 5,
            "shots": shots,
            "queries": queries,
            "train_ways": train_ways,
            "meta_batch": meta_batch,
            "meta_iterations": iterations,
            "eval_every": val_every or iterations,
            "val_episodes": val_episodes,
            "lr_halving_every": lr_halving_every,
            "eval_episodes": eval_episodes,
            "eval_meta_batch": 50,
            "class_split": SPLIT,
            "lake_runs": lake_runs,
        },
        "method": method,
        "output": None,
    }


def run_omniglot(specs: dict[str, dict[str, Any]]) -> dict[str, float]:
    """Run each spec; ``name/accuracy``, ``name/ci95`` and the Lake runs' accuracy per run."""
    import paralab

    ours: dict[str, float] = {}
    for name, spec in specs.items():
        result = paralab.run(spec)
        ours[f"omniglot/{name}"] = float(result.metrics["meta_test/accuracy"])
        ours[f"omniglot/{name}/ci95"] = float(result.metrics["meta_test/ci95"])
        if "lake_runs/accuracy" in result.metrics:
            ours[f"lake_runs/20way1shot/{name}_model"] = float(result.metrics["lake_runs/accuracy"])
        if "meta_val/selected_phase" in result.metrics:
            ours[f"omniglot/{name}/selected_phase"] = float(
                result.metrics["meta_val/selected_phase"])
            ours[f"omniglot/{name}/meta_val"] = float(result.metrics["meta_val/selected_accuracy"])
        ours[f"seconds/{name}"] = float(result.timings["total"])
    return ours
