"""Angwin, Larson, Mattu and Kirchner 2016, "Machine Bias" (ProPublica): COMPAS's error rates.

The audit of decisions that already exist: no model is trained. Each figure is one paralab
run of the ``audit`` protocol on the ``compas`` dataset: COMPAS's own ``score_text``, with
"higher risk" = Medium or High (ProPublica's reading, method ``positive_labels``), against
two-year recidivism (``two_year_recid``), audited by race with the ``fairness`` auditor:
false positive rate (higher risk among those who did not reoffend) and false negative rate
(low risk among those who did), with 95% Wilson intervals and each rate's n.

Two populations:

* ``everyone``: all 7,214 people of ``compas-scores-two-years.csv`` (``filter = "none"``).
  The article's figures come from ProPublica's truth tables, which their notebook computes
  from ``cox-parsed.csv`` (not in our data: over 4 MiB, see ../shared/data/SOURCES.md). Their
  tables count 7,214 people, 3,696 Black and 2,454 white, the two-year file's rows, and the
  rates from our file equal theirs to every printed digit: the same population.
* ``filtered``: the 6,172 people of their logistic regression (``filter = "propublica"``:
  screening within 30 days of the arrest, a known outcome, no ordinary traffic offence);
  reported, not checked: the article's rates are not computed on it.

``quick`` is the same computation (it takes seconds).
"""

from __future__ import annotations

import warnings
from typing import Any

import paralab

RACES = ("African-American", "Caucasian")
HIGHER_RISK = {"name": "positive_labels", "column": "score_text", "labels": ["Medium", "High"]}


def audit(filter: str) -> dict[str, Any]:  # noqa: A002 - the dataset option's name
    """The race table of one population (groups under 30 people are reported with their n
    and intervals, and left out of the disparities: the auditor's default)."""
    spec = {
        "name": f"angwin2016-{filter}",
        "dataset": {"name": "compas", "filter": filter},
        "model": None,
        "output": None,
        "protocol": {"name": "audit"},
        "method": HIGHER_RISK,
        "metrics": ["accuracy"],
        "auditors": [{"name": "fairness", "sensitive": "race", "bootstrap": 1000}],
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the small groups' warnings: their n is reported
        result = paralab.run(spec)
    if result.status != "completed":
        raise RuntimeError(f"the audit of {filter!r} ended {result.status}: {result.error}")
    return {"table": result.phases[-1]["audits"]["fairness/all"]["race"],
            "accuracy": result.metrics["all/accuracy"]}


def reproduce(quick: bool) -> dict[str, float]:
    ours: dict[str, float] = {}
    for population, filter in (("everyone", "none"), ("filtered", "propublica")):
        found = audit(filter)
        table = found["table"]
        groups = table["groups"]
        ours[f"{population}/accuracy"] = found["accuracy"]
        for race in RACES:
            at = groups.index(race)
            short = "black" if race == "African-American" else "white"
            for rate, key in (("false_positive_rate", "fpr"), ("false_negative_rate", "fnr")):
                low, high = table["rate_intervals"][rate][at]
                ours[f"{population}/{key}/{short}"] = table["metrics"][rate][at]
                ours[f"{population}/{key}/{short}/ci_low"] = low
                ours[f"{population}/{key}/{short}/ci_high"] = high
                ours[f"{population}/{key}/{short}/n"] = table["denominators"][rate][at]
        ours[f"{population}/people"] = sum(table["metrics"]["count"])
        for name in ("equalized_odds_difference",):
            ours[f"{population}/{name}"] = table["disparities"][name]
        print(f"{population}: {int(ours[f'{population}/people'])} people; "
              f"{name} {table['disparities'][name]:.3f} set by {table['set_by'][name]}; "
              f"left out (under 30 rows): {table['excluded']}")
    return ours
