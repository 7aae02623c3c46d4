"""Reproductions of published results: ``papers/<name>/paper.toml``.

A paper folder holds ``paper.toml``::

    [paper]
    title = "Prototypical Networks for Few-shot Learning"
    citation = "Snell, Swersky and Zemel, NeurIPS 2017"
    script = "reproduce.py"      # optional: defines reproduce(quick: bool) -> dict[str, float]
    data = "what differs from the paper's setting"

    [experiment]                 # optional, instead of a script: one spec, run as is
    dataset = "digits"
    model = "mlp"

    [[claims]]                   # one row of the printed table each
    metric = "omniglot/5way1shot"
    paper = 0.988
    tolerance = 0.05             # |ours - paper| <= tolerance ...
    check = "within"             # ... or "at_least" (ours >= paper - tolerance), "at_most",
                                 # or "report" (printed, not checked)

    [[orderings]]                # the shape of a table: each metric >= the next
    metrics = ["replay/class_il", "naive/class_il"]
    margin = 0.3                 # ... by at least this much (a method against its baseline
                                 # in the same run: a no-op fails it)
    quick = true                 # also checked in quick mode (default: full runs only)

    [[quick]]                    # what the quick setting itself must give (``--quick``)
    metric = "omniglot/5way1shot"
    expected = 0.71              # measured once on the quick setting, at its full length
    tolerance = 0.05
    check = "at_least"           # within, at_least, at_most or report, as for claims
    measured = "2026-12-01, torch 2.14.1, CPU"

``paralab reproduce NAME`` runs it and prints ours beside the paper's numbers. ``--quick``
runs the smaller setting and judges it against its own ``[[quick]]`` expectations, never the
paper's numbers (a quick run is a different setting: comparing it with the paper would make
every quick run a "miss" and hide a real regression). A paper without ``[[quick]]`` entries
prints its quick numbers unchecked.
"""

from __future__ import annotations

import importlib.util
import os
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PAPERS_ENV = "PARALAB_PAPERS"


class PaperError(LookupError):
    """A paper that does not exist or whose folder is malformed."""


PACKAGED_PAPERS = Path(__file__).resolve().parent / "_papers"
"""Where a wheel puts the reproductions (pyproject's ``force-include``): ``paralab
reproduce`` works from an installed wheel, not only from a checkout."""


def find_papers_dir(explicit: str | os.PathLike[str] | None = None) -> Path:
    """``explicit``, else ``$PARALAB_PAPERS``, else the repository's ``papers/`` (a checkout),
    else the copy inside the installed package, else ./papers."""
    if explicit:
        return Path(explicit)
    if os.environ.get(PAPERS_ENV):
        return Path(os.environ[PAPERS_ENV])
    for folder in (Path(__file__).resolve().parents[2] / "papers", PACKAGED_PAPERS):
        if folder.is_dir():
            return folder
    return Path.cwd() / "papers"


def available_papers(explicit: str | None = None) -> list[tuple[str, str]]:
    folder = find_papers_dir(explicit)
    found = []
    for path in sorted(folder.glob("*/paper.toml")):
        title = tomllib.loads(path.read_text("utf-8")).get("paper", {}).get("title", "")
        found.append((path.parent.name, title))
    return found


@dataclass
class ClaimRow:
    metric: str
    paper: float | None
    ours: float | None
    check: str
    tolerance: float
    passed: bool | None
    note: str = ""


@dataclass
class PaperReport:
    name: str
    title: str
    citation: str
    data_note: str
    quick: bool = False
    rows: list[ClaimRow] = field(default_factory=list)
    orderings: list[tuple[list[str], bool]] = field(default_factory=list)
    ours: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0
    margins: dict[int, float] = field(default_factory=dict)
    """Ordering index -> the margin each metric must exceed the next by."""

    @property
    def passed(self) -> bool:
        rows = all(row.passed is not False for row in self.rows)
        return rows and all(ok for _, ok in self.orderings)

    def render(self) -> str:
        lines = [f"{self.title}", f"  {self.citation}"]
        if self.data_note:
            lines.append(f"  data: {self.data_note}")
        if self.quick:
            lines.append("  QUICK SETTING: judged against the quick setting's own expected "
                         "values, not the paper's")
        lines.append("")
        reference = "expected" if self.quick else "paper"
        lines.append(f"  {'metric':<36} {reference:>8} {'ours':>8}  check")
        for row in self.rows:
            paper, ours = _value(row.paper), _value(row.ours)
            verdict = {True: "ok", False: "MISSED", None: ""}[row.passed]
            rule = "" if row.check == "report" else f"{row.check} ±{row.tolerance:g} "
            lines.append(f"  {row.metric:<36} {paper:>8} {ours:>8}  {rule}{verdict}")
            if row.note:
                lines.append(f"      {row.note}")
        for position, (metrics, ok) in enumerate(self.orderings):
            margin = self.margins.get(position)
            by = f" by at least {margin:g}" if margin is not None else ""
            lines.append(f"  ordering {' >= '.join(metrics)}{by}: {'ok' if ok else 'MISSED'}")
        lines.append("")
        if self.quick:
            checked = any(row.passed is not None for row in self.rows) or self.orderings
            verdict = ("quick setting as expected" if self.passed
                       else "quick setting NOT as expected (a regression?)")
            lines.append(verdict if checked else
                         "quick setting: no expectations recorded (numbers printed, not checked)")
        else:
            lines.append("reproduced" if self.passed else "NOT reproduced")
        return "\n".join(lines)


    def to_dict(self) -> dict[str, Any]:
        """What ``--record`` writes: the claims judged, every value, how long, where."""
        import platform
        import time

        try:
            load = list(os.getloadavg())
        except OSError:  # pragma: no cover - not on every platform
            load = []
        try:
            import torch

            torch_version = torch.__version__
        except ImportError:  # pragma: no cover
            torch_version = ""
        return {
            "paper": self.name,
            "setting": "quick" if self.quick else "full",
            "passed": self.passed,
            "date": time.strftime("%Y-%m-%d"),
            "seconds": round(self.seconds, 1),
            "machine": {"platform": platform.platform(), "processor": platform.machine(),
                        "cpus": os.cpu_count(), "load_average": load,
                        "torch": torch_version},
            "rows": [{"metric": r.metric, "paper": r.paper, "ours": r.ours, "check": r.check,
                      "tolerance": r.tolerance, "passed": r.passed, "note": r.note}
                     for r in self.rows],
            "orderings": [{"metrics": m, "passed": ok} for m, ok in self.orderings],
            "ours": dict(self.ours),
        }


RESULTS_FOLDER = "results"
"""``papers/<name>/results/{full,quick}.json``: the last recorded run of each setting
(``paralab reproduce NAME --record``), from which ``papers/README.md``'s table is made."""


def record(report: PaperReport, papers_dir: str | None = None) -> Path:
    """Write ``report`` as the paper's recorded result of its setting; returns the file."""
    import json

    folder = find_papers_dir(papers_dir) / report.name / RESULTS_FOLDER
    folder.mkdir(exist_ok=True)
    path = folder / f"{'quick' if report.quick else 'full'}.json"
    path.write_text(json.dumps(report.to_dict(), indent=2, allow_nan=False,
                               default=str) + "\n", encoding="utf-8")
    return path


TABLE_BEGIN = "<!-- papers table: generated by `python -m paralab.papers`, do not edit -->"
TABLE_END = "<!-- end of papers table -->"


def _value(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and not value.is_integer():
        return f"{value:.4g}"
    return f"{value:g}" if isinstance(value, (int, float)) else str(value)


def table(papers_dir: str | None = None) -> str:
    """The Markdown table of every paper: its checked claims, the paper's value, ours from
    the recorded full run (and the quick setting's verdict), the status and the time."""
    import json

    root = find_papers_dir(papers_dir)
    lines = [TABLE_BEGIN, "",
             "| paper | claim checked | paper | ours (full run) | status | full run | quick setting |",
             "|---|---|---|---|---|---|---|"]
    for path in sorted(root.glob("*/paper.toml")):
        name = path.parent.name
        config = tomllib.loads(path.read_text("utf-8"))
        records = {}
        for setting in ("full", "quick"):
            file = path.parent / RESULTS_FOLDER / f"{setting}.json"
            if file.is_file():
                records[setting] = json.loads(file.read_text("utf-8"))
        full = records.get("full")
        quick = records.get("quick")
        ours = {row["metric"]: row for row in full["rows"]} if full else {}
        when = (f"{'reproduced' if full['passed'] else '**NOT reproduced**'} "
                f"({full['date']}, {full['seconds']:.0f} s)" if full else "not recorded")
        quick_text = ("not recorded" if quick is None else
                      f"{'as expected' if quick['passed'] else 'NOT as expected'} "
                      f"({quick['date']}, {quick['seconds']:.0f} s)")
        claims = [c for c in config.get("claims", []) if c.get("check", "within") != "report"]
        recorded_orderings = {tuple(o["metrics"]): o["passed"]
                              for o in (full or {}).get("orderings", [])}
        for ordering in config.get("orderings", []):  # the table's shape: checked too
            metrics = tuple(ordering["metrics"])
            margin = ordering.get("margin")
            label = " >= ".join(metrics) + (f" by {margin:g}" if margin is not None else "")
            claims.append({"ordering": label, "metrics": metrics})
        if not claims:
            claims = [{"metric": "(numbers reported, none checked)"}]
        for position, claim in enumerate(claims):
            if "ordering" in claim:
                passed = recorded_orderings.get(claim["metrics"]) if full else None
                status = ("no record" if full is None else "-" if passed is None
                          else "reproduced" if passed else "**missed**")
                first = position == 0
                lines.append(
                    f"| {f'`{name}`' if first else ''} | ordering `{claim['ordering']}` | - | - | "
                    f"{status} | {when if first else ''} | {quick_text if first else ''} |")
                continue
            row = ours.get(claim["metric"])
            if full is None:
                status = "no record"
            elif row is None:
                status = "-"
            else:
                status = {True: "reproduced", False: "**missed**", None: "reported"}[row["passed"]]
            check = claim.get("check", "within")
            rule = "" if "paper" not in claim else (
                f" ({check} ±{float(claim.get('tolerance', 0)):g})")
            first = position == 0
            lines.append(
                f"| {f'`{name}`' if first else ''} | `{claim['metric']}`{rule} | "
                f"{_value(claim.get('paper'))} | {_value(row['ours']) if row else '-'} | "
                f"{status} | {when if first else ''} | {quick_text if first else ''} |"
            )
    lines += ["", "Times are wall-clock seconds on the machine each record names "
              "(`results/*.json` holds its load average and torch version).", "", TABLE_END]
    return "\n".join(lines)


def update_readme(papers_dir: str | None = None) -> Path:
    """Replace the generated table in ``papers/README.md`` (or append it)."""
    path = find_papers_dir(papers_dir) / "README.md"
    text = path.read_text("utf-8") if path.is_file() else "# papers/\n"
    generated = table(papers_dir)
    if TABLE_BEGIN in text and TABLE_END in text:
        head, rest = text.split(TABLE_BEGIN, 1)
        _, tail = rest.split(TABLE_END, 1)
        text = head + generated + tail
    else:
        text = text.rstrip("\n") + "\n\n" + generated + "\n"
    path.write_text(text, encoding="utf-8")
    return path


def _script(folder: Path, name: str) -> Callable[..., dict[str, float]]:
    path = folder / name
    spec = importlib.util.spec_from_file_location(f"paralab_paper_{folder.name}", path)
    if spec is None or spec.loader is None:
        raise PaperError(f"paper {folder.name!r}: cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not hasattr(module, "reproduce"):
        raise PaperError(f"paper {folder.name!r}: {path} defines no reproduce(quick)")
    return module.reproduce


def reproduce(name: str, *, papers_dir: str | None = None, quick: bool = False) -> PaperReport:
    """Run one paper's reproduction and compare with its claims."""
    root = find_papers_dir(papers_dir)
    folder = root / name
    config_path = folder / "paper.toml"
    if not config_path.is_file():
        choices = [paper for paper, _ in available_papers(str(root))]
        from paralab_registry import suggest

        raise PaperError(
            f"unknown paper {name!r}{suggest(name, choices)} in {root}; papers: "
            f"{', '.join(choices) or 'none'}"
        )
    config = tomllib.loads(config_path.read_text("utf-8"))
    paper = config.get("paper", {})
    import time

    started = time.perf_counter()
    if "script" in paper:
        ours = _script(folder, paper["script"])(quick=quick)
    elif "experiment" in config:
        from paralab.runner import run

        experiment = dict(config["experiment"])
        experiment.setdefault("name", name)
        ours = {k: v for k, v in run(experiment).metrics.items() if isinstance(v, (int, float))}
    else:
        raise PaperError(f"paper {name!r}: paper.toml needs [paper].script or [experiment]")
    report = PaperReport(
        name=name,
        title=paper.get("title", name),
        citation=paper.get("citation", ""),
        data_note=paper.get("data", ""),
        quick=quick,
        ours=dict(ours),
        seconds=time.perf_counter() - started,
    )
    if quick:
        expectations = config.get("quick", [])
        for entry in expectations:
            report.rows.append(_judge({**entry, "paper": entry.get("expected")}, ours))
        judged = {entry["metric"] for entry in expectations}
        for claim in config.get("claims", []):  # the paper's metrics, printed only
            if claim["metric"] not in judged:
                report.rows.append(_judge({"metric": claim["metric"], "check": "report",
                                           "note": "quick setting: not compared with the paper"},
                                          ours))
    else:
        for claim in config.get("claims", []):
            report.rows.append(_judge(claim, ours))
    for ordering in config.get("orderings", []):
        if quick and not ordering.get("quick", False):
            continue
        metrics = list(ordering["metrics"])
        values = [ours.get(metric) for metric in metrics]
        slack = float(ordering.get("tolerance", 0.0)) - float(ordering.get("margin", 0.0))
        ok = all(v is not None for v in values) and all(
            a >= b - slack for a, b in zip(values, values[1:])  # type: ignore[operator]
        )
        report.orderings.append((metrics, ok))
        if "margin" in ordering:
            report.margins[len(report.orderings) - 1] = float(ordering["margin"])
    return report


def _judge(claim: dict[str, Any], ours: dict[str, float]) -> ClaimRow:
    metric = claim["metric"]
    paper = claim.get("paper")
    value = ours.get(metric)
    check = claim.get("check", "within")
    tolerance = float(claim.get("tolerance", 0.0))
    passed: bool | None
    if check == "report" or paper is None:
        passed = None
    elif value is None:
        passed = False
    elif check == "within":
        passed = abs(value - paper) <= tolerance
    elif check == "at_least":
        passed = value >= paper - tolerance
    elif check == "at_most":
        passed = value <= paper + tolerance
    else:
        raise PaperError(f"claim {metric!r}: check must be within, at_least, at_most or report")
    return ClaimRow(metric, paper, value, check, tolerance, passed, claim.get("note", ""))


if __name__ == "__main__":  # pragma: no cover - python -m paralab.papers
    print(f"updated {update_readme()}")
