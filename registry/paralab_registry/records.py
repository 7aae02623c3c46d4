"""What the registry knows about one plugin: a small JSON-ready record."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

ACTIVE = "active"
FAILED = "failed"
DISABLED = "disabled"
INCOMPATIBLE = "incompatible"
MISSING = "missing"
"""Loaded, but a library some of its components import at run time is not installed: those
components are refused by the spec check (with the install hint); the rest work."""
STATUSES = (ACTIVE, FAILED, DISABLED, INCOMPATIBLE, MISSING)


@dataclass
class PluginRecord:
    """One plugin as ``paralab plugins`` lists it.

    ``name`` is the one canonical name: the entry-point name, which is also the name that
    ``-p no:NAME`` blocks, ``PARALAB_LOAD_PLUGINS`` selects and ``check-plugin`` checks. An
    entry point refused because another distribution holds its name is recorded as
    ``NAME@DISTRIBUTION`` (status failed), so both stay visible and addressable.
    ``bundled`` marks the plugins the host's own distribution ships: their names and
    component names cannot be taken by another distribution.
    """

    name: str
    version: str = ""
    distribution: str = ""
    module: str = ""
    status: str = ACTIVE
    reason: str = ""
    api: str = ""
    builtin: bool = False
    bundled: bool = False
    contributions: dict[str, list[str]] = field(default_factory=dict)
    hooks: list[str] = field(default_factory=list)
    """The hooks the plugin implements (contribution and lifecycle hooks alike)."""
    missing: list[str] = field(default_factory=list)
    """One line per component whose required modules are absent: what, and how to install."""

    @property
    def label(self) -> str:
        """``name (distribution version)``: how errors name the plugin."""
        origin = " ".join(part for part in (self.distribution, self.version) if part)
        return f"{self.name} ({origin})" if origin else self.name

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "distribution": self.distribution,
            "module": self.module,
            "status": self.status,
            "reason": self.reason,
            "api": self.api,
            "builtin": self.builtin,
            "bundled": self.bundled,
            "contributions": {kind: list(names) for kind, names in self.contributions.items()},
            "hooks": list(self.hooks),
            "missing": list(self.missing),
        }


@dataclass(frozen=True)
class NameClash:
    """A plugin refused because another one holds a name it claims.

    ``what`` is the name in words (``"the plugin name 'x'"``, ``"auditor 'fairness'"``);
    ``holder`` keeps it, ``newcomer`` failed.
    """

    what: str
    holder: PluginRecord
    newcomer: PluginRecord

    def involves(self, record: PluginRecord) -> bool:
        return record is self.holder or record is self.newcomer
