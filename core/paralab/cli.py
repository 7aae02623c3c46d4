"""The ``paralab`` command line.

    paralab run SPEC.toml            run an experiment (--set PATH=VALUE, --dry-run,
                                     --seeds 0-4 --grid method.lr=0.01,0.1 for a study)
    paralab sweep STUDY.toml         run a study: seeds x grid or a search, with a table
    paralab resume RUN_DIR           continue an interrupted run from its last checkpoint
    paralab compare PATH ...         final metrics of runs or studies side by side
    paralab plugins [--json] [--all] list plugins with their status and contributions
    paralab list [KIND]              components by kind, with the plugin providing each
    paralab show KIND NAME           one component: options, defaults, constraints, provider
    paralab check-plugin NAME        the conformance suite on one installed plugin
    paralab reproduce PAPER          reproduce a published result from papers/
    paralab --version                the host and its plugins

Plugin switches go before the subcommand: ``--no-plugins``, ``--strict-plugins``,
``-p NAME`` / ``-p no:NAME``. ``plugins``, ``list`` and ``show`` never import torch.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from paralab import __version__, host
from paralab.components import KINDS


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="paralab",
        description="Research experiments where AI paradigms compose, through plugins.",
    )
    parser.add_argument("--version", action="store_true", help="print versions and exit")
    parser.add_argument("--no-plugins", action="store_true",
                        help="safe mode: import no installed plugin (PARALAB_NO_PLUGINS=1)")
    parser.add_argument("--strict-plugins", action="store_true",
                        help="fail when any plugin fails to load (PARALAB_STRICT_PLUGINS=1)")
    parser.add_argument("-p", dest="switches", action="append", default=[], metavar="NAME",
                        help="load plugin NAME (also in safe mode), or block it with no:NAME")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = commands.add_parser("run", help="run an experiment spec (TOML)")
    run.add_argument("spec", help="path to the experiment's TOML file")
    run.add_argument("--output", help="folder for run folders (overrides the spec's output)")
    run.add_argument("--seed", type=int, help="override the spec's seed")
    run.add_argument("--device", help="override the spec's device (auto, cpu, cuda)")
    _add_overrides(run)
    run.add_argument("--dry-run", action="store_true",
                     help="validate the spec (after --set) and print it resolved; run nothing")
    run.add_argument("--seeds", help="run these seeds as a study: 0-4, or 0,3,7")
    run.add_argument("--grid", action="append", default=[], metavar="PATH=V1,V2",
                     help="a study over these values of PATH (repeat for a product)")
    _add_executor(run)
    _add_verbosity(run)

    sweep = commands.add_parser("sweep", help="run a study (a TOML file with a [study] table)")
    sweep.add_argument("study", help="path to the study's TOML file")
    sweep.add_argument("--output", help="folder for the study's folder")
    sweep.add_argument("--no-resume", action="store_true",
                       help="rerun every run, also those that completed before")
    _add_overrides(sweep)
    _add_executor(sweep)
    _add_verbosity(sweep)

    resume = commands.add_parser("resume", help="continue an interrupted run from its checkpoint")
    resume.add_argument("run_dir", help="the run's folder (it holds result.json and checkpoint.pt)")
    _add_verbosity(resume)

    compare = commands.add_parser("compare", help="final metrics of runs or studies side by side")
    compare.add_argument("paths", nargs="+", help="run folders or study folders")
    compare.add_argument("--metric", action="append", dest="metrics",
                         help="only this metric (repeatable)")
    compare.add_argument("--plot", metavar="PNG", help="write an overlay plot of the curves")
    compare.add_argument("--json", action="store_true", help="print JSON")

    plugins = commands.add_parser("plugins", help="list installed plugins")
    plugins.add_argument("--json", action="store_true", help="print JSON")
    plugins.add_argument("--all", action="store_true", help="include the host's own plugin")

    listing = commands.add_parser("list", help="list components by kind")
    listing.add_argument("kind", nargs="?", choices=KINDS, help="only this kind")
    listing.add_argument("--json", action="store_true", help="print JSON")

    show = commands.add_parser("show", help="one component: its options and what it consumes")
    show.add_argument("kind", choices=KINDS, help="the component's kind")
    show.add_argument("name", help="the component's name (see `paralab list KIND`)")
    show.add_argument("--json", action="store_true", help="print JSON")

    check = commands.add_parser("check-plugin", help="run the conformance suite on a plugin")
    check.add_argument("name", help="the plugin's canonical name (see `paralab plugins`)")
    check.add_argument("--json", action="store_true", help="print JSON")

    reproduce = commands.add_parser("reproduce", help="reproduce a published result")
    reproduce.add_argument("paper", nargs="?", help="the paper's folder name under papers/")
    reproduce.add_argument("--papers-dir", help="where the papers live (default: papers/)")
    reproduce.add_argument("--quick", action="store_true", help="a smaller, faster version")
    reproduce.add_argument("--record", action="store_true",
                           help="write the result to papers/NAME/results/ and regenerate the "
                                "table in papers/README.md")

    init = commands.add_parser("init", help="write a starter spec, or a plugin skeleton")
    init.add_argument("path", nargs="?",
                      help="the spec file to write (default: experiment.toml), or with "
                           "--plugin the folder for the skeleton (default: ./DIST-NAME)")
    init.add_argument("--plugin", metavar="NAME",
                      help="write a plugin package NAME (pyproject with its paralab entry "
                           "point, components, a test with the kit) instead of a spec")
    return parser


def _add_overrides(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="PATH=VALUE",
                        help="change a spec value, e.g. --set method.lr=0.01 (VALUE is TOML)")


def _add_executor(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--executor", choices=("local", "processes", "ray"),
                        help="where a study's runs execute (default: the study's, else local)")
    parser.add_argument("--workers", type=int, help="parallel runs for processes/ray")


def _add_verbosity(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    group.add_argument("-v", "--verbose", action="store_true",
                       help="also print the run's log messages (plugins' run.log)")


def _verbosity(args: argparse.Namespace) -> None:
    if getattr(args, "quiet", False):
        os.environ["PARALAB_QUIET"] = "1"
    if getattr(args, "verbose", False):
        import logging

        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        log = logging.getLogger("paralab")
        log.addHandler(handler)
        log.setLevel(logging.INFO)


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    from paralab_registry import PluginLoadError, UnknownPluginError

    try:
        registry = host.configure(
            switches=args.switches, no_plugins=args.no_plugins, strict=args.strict_plugins
        )
        registry.load()
        if args.version:
            return _version(registry)
        if args.command is None:
            parser.print_help()
            return 2
        _verbosity(args)
        handler = {
            "run": _run,
            "sweep": _sweep,
            "resume": _resume,
            "compare": _compare,
            "plugins": _plugins,
            "list": _list,
            "show": _show,
            "check-plugin": _check_plugin,
            "reproduce": _reproduce,
            "init": _init,
        }[args.command]
        code = handler(args, registry)
        sys.stdout.flush()  # a closed pipe shows here, inside the handler below
        return code
    except (PluginLoadError, UnknownPluginError) as error:
        print(f"paralab: {error}", file=sys.stderr)
        return 3
    except KeyboardInterrupt as interrupt:
        # Ctrl-C (SIGINT) or SIGTERM: the conventional 128 + signal number, 130 or 143.
        number = getattr(interrupt, "signal", signal.SIGINT)
        print(f"paralab: interrupted ({signal.Signals(number).name})", file=sys.stderr)
        saved = getattr(getattr(interrupt, "result", None), "path", "")
        if saved:
            print(f"paralab: the run is marked interrupted; finished phases are in {saved}",
                  file=sys.stderr)
        return 128 + int(number)
    except BrokenPipeError:
        # The reader went away (`paralab plugins | head -1`): stop quietly, as Unix tools do.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0


def _version(registry: Any) -> int:
    print(f"paralab {__version__} (hook API {host.hookspecs.HOST_API_VERSION})")
    for record in registry.plugins():
        status = "" if record.status == "active" else f" [{record.status}]"
        print(f"  {record.name} {record.version}{status}")
    return 0


def _warn_failed_plugins(registry: Any) -> None:
    """A plugin that failed to load takes its components with it: say so before a run, so
    that an "unknown component" error below is not a mystery."""
    for record in registry.plugins():
        if record.status == "failed":
            print(f"paralab: warning: plugin {record.name} failed to load, its components are "
                  f"unavailable: {record.reason} (see `paralab plugins`)", file=sys.stderr)


def _run_overrides(args: argparse.Namespace) -> list[str]:
    """``--output``/``--seed``/``--device`` are shorthands for ``--set``, applied first."""
    shorthands = [f"{key}={json.dumps(value)}" for key in ("output", "seed", "device")
                  if (value := getattr(args, key, None)) is not None]
    return shorthands + list(args.overrides)


def _run(args: argparse.Namespace, registry: Any) -> int:
    from paralab.runner import RunError, run
    from paralab.spec import ExperimentSpec, SpecError

    overrides = _run_overrides(args)
    _warn_failed_plugins(registry)
    if args.seeds is not None or args.grid:
        if args.dry_run:
            print("paralab: --dry-run checks one run; drop --seeds/--grid", file=sys.stderr)
            return 2
        from paralab.study.cli import run_as_study

        return run_as_study(args.spec, seeds=args.seeds, grid=args.grid, overrides=overrides,
                            output=None, executor=args.executor, workers=args.workers,
                            registry=registry)
    try:
        spec = ExperimentSpec.load(args.spec, overrides, registry)
        if args.dry_run:
            spec.validate(registry)
            print(spec.to_toml(), end="")
            print(f"# {args.spec}: valid (nothing was run)", file=sys.stderr)
            return 0
        result = run(spec, registry=registry)
    except SpecError as error:
        print(f"paralab: {error}", file=sys.stderr)
        return 2
    except RunError as error:
        print(f"paralab: run failed: {error}", file=sys.stderr)
        if error.result.path:
            print(f"paralab: finished phases are saved in {error.result.path}", file=sys.stderr)
        return 1
    return _print_result(result)


def _print_result(result: Any) -> int:
    print(f"{result.name}: {result.status} in {result.timings.get('total', 0):.1f} s")
    for key, value in sorted(result.metrics.items()):
        if isinstance(value, (int, float)):
            print(f"  {key} = {value:.4f}")
    if result.path:
        print(f"results in {result.path}")
    return 0


def _sweep(args: argparse.Namespace, registry: Any) -> int:
    from paralab.spec import SpecError
    from paralab.study.cli import sweep_main

    try:
        return sweep_main(args.study, executor=args.executor, workers=args.workers,
                          output=args.output, overrides=args.overrides, registry=registry,
                          resume=not args.no_resume)
    except SpecError as error:
        print(f"paralab: {error}", file=sys.stderr)
        return 2


def _resume(args: argparse.Namespace, registry: Any) -> int:
    from paralab.checkpoints import ResumeError, resume
    from paralab.runner import RunError
    from paralab.spec import SpecError

    try:
        result = resume(args.run_dir, registry=registry)
    except (ResumeError, SpecError) as error:
        print(f"paralab: {error}", file=sys.stderr)
        return 2
    except RunError as error:
        print(f"paralab: run failed: {error}", file=sys.stderr)
        return 1
    return _print_result(result)


def _compare(args: argparse.Namespace, registry: Any) -> int:
    from paralab.comparison import compare_main

    return compare_main(args.paths, output=args.plot, metrics=args.metrics, as_json=args.json)


def _plugins(args: argparse.Namespace, registry: Any) -> int:
    records = registry.plugins(include_builtin=args.all)
    if args.json:
        print(json.dumps([record.to_dict() for record in records], indent=2))
        return 0
    if not records:
        print("no plugins loaded" + (" (safe mode)" if registry.settings.no_plugins else ""))
        return 0
    for record in records:
        contributed = ", ".join(
            f"{len(names)} {kind}{'s' if len(names) > 1 else ''}"
            for kind, names in record.contributions.items()
        )
        line = f"{record.name:<24} {record.version:<8} {record.status:<12} {contributed}"
        print(line.rstrip())
        if record.reason:
            print(f"    {record.reason}")
    return 0


def _list(args: argparse.Namespace, registry: Any) -> int:
    kinds = [args.kind] if args.kind else list(KINDS)
    if args.json:
        data = {
            kind: [spec.describe() for _, spec in sorted(registry.components[kind].items())]
            for kind in kinds
        }
        print(json.dumps(data, indent=2))
        return 0
    for kind in kinds:
        specs = sorted(registry.components[kind].items())
        print(f"{kind}{'es' if kind.endswith('s') else '' if kind == 'middleware' else 's'}:")
        if not specs:
            print("  (none)")
        for name, spec in specs:
            extra = ""
            if kind == "method":
                family = f"; family: {spec.family}" if spec.family else ""
                extra = f" [protocols: {', '.join(spec.protocols)}{family}]"
            elif kind == "protocol" and spec.accepts:
                extra = f" [accepts {', '.join(spec.accepts)} methods]"
            print(f"  {name:<22} {spec.provider:<22} {spec.description}{extra}")
    print("\n`paralab show KIND NAME` prints a component's options, defaults and constraints.")
    return 0


def _show(args: argparse.Namespace, registry: Any) -> int:
    if args.name not in registry.components[args.kind]:
        print(f"paralab: {registry.unknown_message(args.kind, args.name)}", file=sys.stderr)
        return 2
    spec = registry.components[args.kind][args.name]
    if args.json:
        described = spec.describe()
        described["options"] = {key: option.describe()
                                for key, option in spec.declared_options().items()}
        print(json.dumps(described, indent=2))
        return 0
    print(render_component(spec))
    return 0


def _listed(option: Any) -> bool:
    """A list-valued option (``methods``): ``used_when`` then asks for one of its items."""
    return isinstance(option.default, (list, tuple))


def render_component(spec: Any) -> str:
    """A component as ``paralab show`` prints it (and the generated docs quote it)."""
    lines = [f"{spec.kind} {spec.name}  (plugin {spec.provider})", "", spec.description, ""]
    declared = spec.declared_options()
    if declared:
        width = max(len(name) for name in declared)
        lines.append("options:")
        for name, option in declared.items():
            shown = list(option.default) if isinstance(option.default, tuple) else option.default
            default = "(required)" if option.required else repr(shown)
            lines.append(f"  {name:<{width}}  = {default:<16} {option.constraint()}")
            if option.help:
                lines.append(f"  {'':<{width}}    {option.help}")
            conditions = getattr(spec, "used_when", {}).get(name)
            if conditions:
                wanted = " and ".join(
                    f"{other} {'includes' if _listed(declared[other]) else '='} "
                    f"{' or '.join(repr(v) for v in values)}"
                    for other, values in conditions.items())
                lines.append(f"  {'':<{width}}    (used only when {wanted})")
    else:
        lines.append("options: none")
    extra = {key: value for key, value in spec._extra().items() if value or value is False}
    if extra:
        lines.append("")
        lines += [f"{key}: {', '.join(value) if isinstance(value, (list, tuple)) else value}"
                  for key, value in extra.items()]
    return "\n".join(lines).rstrip()


def _check_plugin(args: argparse.Namespace, registry: Any) -> int:
    from paralab.testing.conformance import check_plugin

    report = check_plugin(args.name, registry=registry)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print(report.render())
    return 0 if report.passed else 1


def _reproduce(args: argparse.Namespace, registry: Any) -> int:
    from paralab.papers import (
        PaperError,
        available_papers,
        find_papers_dir,
        record,
        reproduce,
        update_readme,
    )

    try:
        if not args.paper:
            papers = available_papers(args.papers_dir)
            if not papers:  # an empty list and exit 0 would read as "nothing to reproduce"
                print(f"paralab: no papers found in {find_papers_dir(args.papers_dir)} (no "
                      "*/paper.toml); pass --papers-dir or set PARALAB_PAPERS to the folder "
                      "that holds the entries", file=sys.stderr)
                return 2
            for name, title in papers:
                print(f"{name:<28} {title}")
            return 0
        report = reproduce(args.paper, papers_dir=args.papers_dir, quick=args.quick)
    except PaperError as error:
        print(f"paralab: {error}", file=sys.stderr)
        return 2
    print(report.render())
    print(f"({report.seconds:.0f} s)")
    if args.record:
        print(f"recorded in {record(report, args.papers_dir)}; table in "
              f"{update_readme(args.papers_dir)}")
    return 0 if report.passed else 1


def _init(args: argparse.Namespace, registry: Any) -> int:
    from paralab.scaffold import write_plugin, write_spec

    try:
        if args.plugin:
            folder = write_plugin(args.plugin, Path(args.path) if args.path else None)
            print(f"wrote plugin {args.plugin} in {folder}; next: pip install -e {folder} && "
                  f"paralab check-plugin {args.plugin}")
        else:
            path = write_spec(Path(args.path or "experiment.toml"))
            print(f"wrote {path}; run it with: paralab run {path}")
    except (FileExistsError, ValueError) as error:
        print(f"paralab init: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
