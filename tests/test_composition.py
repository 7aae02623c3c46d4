"""Paradigms compose in one spec: a fairness audit of a federated quantum classifier, trained
with a fairness penalty under differential privacy, explained after every evaluation."""

from __future__ import annotations

import json
import math
from pathlib import Path

import paralab
from tests.host_support import REPOSITORY

FLAGSHIP = REPOSITORY / "examples" / "flagship_fair_federated_quantum.toml"


def test_five_plugins_in_one_spec(tmp_path: Path) -> None:
    spec = paralab.ExperimentSpec.from_toml(FLAGSHIP)
    # The embedded biased dataset instead of COMPAS, so the test needs no data files.
    spec = spec.replace(
        dataset="biased_synthetic",
        output=str(tmp_path),
        protocol={**spec.protocol.to_dict(), "rounds": 4, "eval_every": 2, "clients": 8},
        losses=[{"name": "fairness_penalty", "sensitive": ["group"], "weight": 0.1}],
        auditors=[{"name": "fairness", "sensitive": ["group"], "bootstrap": 20},
                  {"name": "attributions", "method": "integrated_gradients", "rows": 16}],
    )
    result = paralab.run(spec)
    providers = {c["name"]: c["provider"] for c in _components(result)}
    assert providers == {
        "biased_synthetic": "paralab_fairness", "hybrid": "paralab_quantum",
        "federated": "paralab_federated", "fedavg": "paralab_federated",
        "fairness_penalty": "paralab_fairness", "dp": "paralab_federated",
        "fairness": "paralab_fairness", "attributions": "paralab_explain",
        "accuracy": "paralab", "loss": "paralab",
    }
    assert result.status == "completed"
    assert [phase["kind"] for phase in result.phases] == ["round"] * 4
    epsilon = result.metrics["privacy/epsilon"]
    assert math.isfinite(epsilon) and epsilon > 0
    audited = result.phases[1]["audits"]
    gap = audited["fairness/test"]["group"]["disparities"]["demographic_parity_difference"]
    assert 0.0 <= gap <= 1.0
    attributions = audited["attributions/test"]
    assert attributions["method"] == "integrated_gradients" and attributions["importance"]
    folder = Path(result.path)
    saved = json.loads((folder / "result.json").read_text())
    assert saved["spec"]["middleware"][0]["name"] == "dp"
    assert (folder / "fairness_groups.csv").exists()


def _components(result: paralab.Result) -> list[dict[str, str]]:
    registry = paralab.get_registry()
    named = []
    for _path, kind, ref in paralab.ExperimentSpec.from_dict(result.spec).components():
        named.append({"name": ref.name, "provider": registry.component(kind, ref.name).provider})
    return named
