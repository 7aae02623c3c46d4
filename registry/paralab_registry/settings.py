"""Which plugins to load: environment variables and command-line switches, read once.

``PARALAB_NO_PLUGINS=1`` (``--no-plugins``) is safe mode: no entry point is imported.
``PARALAB_LOAD_PLUGINS=a,b`` loads only those. ``-p NAME`` loads one (also in safe mode, and a
dotted module path that is no entry point is loaded as a plugin too); ``-p no:NAME`` blocks one.
``PARALAB_STRICT_PLUGINS=1`` (``--strict-plugins``) makes every plugin failure fatal.
``PARALAB_TRACE_HOOKS=1`` prints every hook call.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

TRUE_WORDS = {"1", "true", "yes", "on"}


def _flag(environ: Mapping[str, str], name: str) -> bool:
    return environ.get(name, "").strip().lower() in TRUE_WORDS


def _names(value: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.split(",") if part.strip())


@dataclass(frozen=True)
class LoadSettings:
    no_plugins: bool = False
    only: tuple[str, ...] | None = None
    include: tuple[str, ...] = ()
    block: tuple[str, ...] = ()
    strict: bool = False
    trace: bool = False
    extra: tuple[str, ...] = field(default=())

    @classmethod
    def from_env(
        cls,
        environ: Mapping[str, str] | None = None,
        *,
        switches: Iterable[str] = (),
        no_plugins: bool = False,
        strict: bool = False,
    ) -> LoadSettings:
        """Combine the environment with ``-p`` switches (``NAME`` or ``no:NAME``)."""
        environ = os.environ if environ is None else environ
        include: list[str] = []
        block: list[str] = []
        for switch in switches:
            if switch.startswith("no:"):
                block.append(switch[3:])
            else:
                include.append(switch)
        only = environ.get("PARALAB_LOAD_PLUGINS")
        return cls(
            no_plugins=no_plugins or _flag(environ, "PARALAB_NO_PLUGINS"),
            only=_names(only) if only is not None else None,
            include=tuple(include),
            block=tuple(block),
            strict=strict or _flag(environ, "PARALAB_STRICT_PLUGINS"),
            trace=_flag(environ, "PARALAB_TRACE_HOOKS"),
        )

    def disabled_reason(self, name: str) -> str | None:
        """Why the plugin ``name`` is not to be loaded, or ``None`` when it is."""
        if name in self.block:
            return f"blocked by -p no:{name}"
        if name in self.include:
            return None
        if self.no_plugins:
            return "safe mode (PARALAB_NO_PLUGINS / --no-plugins)"
        if self.only is not None and name not in self.only:
            return "not listed in PARALAB_LOAD_PLUGINS"
        return None
