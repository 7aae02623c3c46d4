"""Discovery and validation of paralab plugins and their components.

Light on purpose: pluggy and the standard library only, so listing plugins never imports
torch. The host (``paralab``) builds one :class:`PluginRegistry` per process.
"""

from paralab_registry.manager import (
    PluginLoadError,
    PluginRegistry,
    UnknownComponentError,
    UnknownPluginError,
    api_compatible,
    importable,
    suggest,
)
from paralab_registry.records import (
    ACTIVE,
    DISABLED,
    FAILED,
    INCOMPATIBLE,
    STATUSES,
    NameClash,
    PluginRecord,
)
from paralab_registry.settings import LoadSettings
from paralab_registry.validation import RecordError

__all__ = [
    "ACTIVE",
    "DISABLED",
    "FAILED",
    "INCOMPATIBLE",
    "STATUSES",
    "LoadSettings",
    "NameClash",
    "PluginLoadError",
    "PluginRecord",
    "RecordError",
    "PluginRegistry",
    "UnknownComponentError",
    "UnknownPluginError",
    "api_compatible",
    "importable",
    "suggest",
]
