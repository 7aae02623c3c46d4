"""Render docs/hooks.md from the hook specs, so the reference never drifts from the contract.

    python -m paralab.docs_reference > docs/hooks.md

A test fails when docs/hooks.md differs from what this prints, or when a hook's docstring
leaves a parameter undocumented.
"""

from __future__ import annotations

from paralab import hookspecs

GROUPS = {
    "Contribution hooks": ("datasets", "models", "protocols", "methods", "metrics", "auditors",
                           "losses", "middleware"),
    "Lifecycle hooks": ("before_experiment", "after_experiment", "before_phase", "after_phase",
                        "after_evaluation", "on_error"),
    "Middleware hooks": ("process_update",),
}


def render_hook_reference() -> str:
    described = hookspecs.describe_hooks()
    lines = [
        "# Hook reference",
        "",
        "Generated from `core/paralab/hookspecs.py` by `python -m paralab.docs_reference`;",
        "a test keeps the two identical. Hook API version "
        f"{hookspecs.HOST_API_VERSION}; a plugin declares `PARALAB_API = \"1.0\"`.",
        "",
    ]
    for group, suffixes in GROUPS.items():
        lines += [f"## {group}", ""]
        for suffix in suffixes:
            name = f"paralab_{suffix}"
            hook = described[name]
            signature = ", ".join(hook["parameters"])
            flags = " (firstresult)" if hook["firstresult"] else ""
            lines += [f"### `{name}({signature})`{flags}", "", hook["doc"], ""]
    return "\n".join(lines).rstrip() + "\n"


if __name__ == "__main__":
    print(render_hook_reference(), end="")
