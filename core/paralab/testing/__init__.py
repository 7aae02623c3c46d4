"""The plugin-author kit: what paralab's own tests use on its bundled plugins.

* :func:`isolated_registry` — a registry with discovery blocked, plus the plugins you pass.
* :func:`use_registry` — make it the process registry for a block of code.
* :func:`tiny_dataset` — small blobs with splits, a sensitive feature and task ids.
* :func:`check_plugin` — the conformance suite (``paralab check-plugin NAME``).

Also a pytest plugin (loaded automatically once paralab is installed) with the fixtures
``paralab_registry`` (isolated, active for the test) and ``paralab_tiny``::

    def test_my_model(paralab_registry):
        import my_plugin
        paralab_registry.add("my_plugin", my_plugin)
        result = paralab.run({"dataset": "paralab_tiny", "model": "tiny", "output": None})
        assert result.status == "completed"
"""

from paralab.testing.conformance import ConformanceReport, check_plugin
from paralab.testing.kit import (
    TINY,
    TinyDataPlugin,
    isolated_registry,
    tiny_dataset,
    use_registry,
)

__all__ = [
    "TINY",
    "ConformanceReport",
    "TinyDataPlugin",
    "check_plugin",
    "isolated_registry",
    "tiny_dataset",
    "use_registry",
]
