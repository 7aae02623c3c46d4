"""Telling a plugin's ``KeyboardInterrupt`` from the user's Ctrl-C.

Plugin code runs inside the registry at import and in its contribution hooks. Whatever it
raises there, ``BaseException`` included (``SystemExit``, ``KeyboardInterrupt``,
``GeneratorExit``), fails only that plugin, so ``paralab plugins``, ``list`` and ``run`` keep
working. One exception is kept: a real Ctrl-C of the user must still stop the command.

The rule, in order:

1. While plugin code runs (main thread only), a wrapper around the current SIGINT handler
   notes that a signal arrived and then calls the handler as before. A ``KeyboardInterrupt``
   raised while a SIGINT was noted is the user's: it propagates.
2. Otherwise, where the wrapper was in place, no signal arrived, so the ``KeyboardInterrupt``
   was raised by the plugin itself (``raise KeyboardInterrupt``): the plugin fails.
3. Where no wrapper could be installed (plugin loaded on another thread, or a handler not set
   from Python), the traceback decides: the plugin's when the innermost frame runs in one of
   the plugin's modules, else the user's.

A plugin that sends itself SIGINT (``os.kill(os.getpid(), SIGINT)``) is indistinguishable from
the user and stops the command, as a Ctrl-C would.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterable
from types import FrameType, TracebackType
from typing import Any


class SigintWatch:
    """Context manager noting whether a SIGINT arrives while it is active."""

    def __init__(self) -> None:
        self.arrived = False
        self.observed = False
        self._previous: Any = None

    def __enter__(self) -> SigintWatch:
        if threading.current_thread() is not threading.main_thread():
            return self
        try:
            previous = signal.getsignal(signal.SIGINT)
        except (ValueError, OSError):
            return self
        if previous in (signal.SIG_IGN, signal.SIG_DFL):
            # Ignored: no Ctrl-C can raise; default: the process dies. Either way a
            # KeyboardInterrupt seen here was raised by the plugin.
            self.observed = True
            return self
        if not callable(previous):
            return self
        self._previous = previous

        def noting(signum: int, frame: FrameType | None) -> Any:
            self.arrived = True
            return previous(signum, frame)

        try:
            signal.signal(signal.SIGINT, noting)
        except (ValueError, OSError):
            return self
        self.observed = True
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None


def is_users_interrupt(error: BaseException, watch: SigintWatch, modules: Iterable[str]) -> bool:
    """Whether ``error``, raised while plugin code ran, is the user's Ctrl-C (see the module
    docstring for the rule); ``modules`` are the plugin's module names."""
    if not isinstance(error, KeyboardInterrupt):
        return False
    if watch.arrived:
        return True
    if watch.observed:
        return False
    return not raised_in(error.__traceback__, modules)


def raised_in(tb: TracebackType | None, modules: Iterable[str]) -> bool:
    """Whether the innermost frame of ``tb`` runs in one of ``modules`` (or a submodule)."""
    prefixes = [module for module in modules if module]
    innermost = None
    while tb is not None:
        innermost = tb
        tb = tb.tb_next
    if innermost is None:
        return False
    name = innermost.tb_frame.f_globals.get("__name__", "")
    return any(name == prefix or name.startswith(prefix + ".") for prefix in prefixes)
