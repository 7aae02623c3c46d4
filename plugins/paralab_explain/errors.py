"""The one error type of the plugin, so callers can catch bad explanation input precisely."""

from __future__ import annotations


class ExplainError(ValueError):
    """Bad input to an explanation: a wrong baseline shape, a non-differentiable model for a
    gradient method, too many players for exact Shapley values, an unknown option value.

    The message names the option or argument, what was given and what would be valid; it is
    raised before any attribution is computed.
    """
