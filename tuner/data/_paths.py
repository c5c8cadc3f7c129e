"""Where a relative path in a spec is looked for: next to the spec first, then in the working directory."""

from __future__ import annotations

from pathlib import Path

__all__ = ["candidate_paths"]


def candidate_paths(path: str | Path, base_dir: str | Path | None) -> list[Path]:
    """The places ``path`` may mean, in the order they are tried (an absolute path means itself)."""
    path = Path(path).expanduser()
    if path.is_absolute():
        return [path]
    return ([Path(base_dir) / path] if base_dir is not None else []) + [Path.cwd() / path]
