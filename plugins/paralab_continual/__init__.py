"""paralab_continual: Continual learning: streams, strategies, Avalanche interop, forgetting metrics.

Work in progress: this plugin contributes nothing yet.
"""

PARALAB_API = "1.0"
