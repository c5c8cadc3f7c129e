"""Safe YAML reading shared by specs and search spaces.

Specs are small hand-written files, so anchors/aliases buy nothing and open the door to
"billion laughs" expansion; they are refused. Every failure becomes the caller's error type
with a one-line message naming the file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

_MAX_BYTES = 4 * 1024 * 1024


class _NoAliasLoader(yaml.SafeLoader):
    """SafeLoader that refuses anchors and aliases (the YAML-bomb vector)."""

    def compose_node(self, parent: Any, index: Any) -> Any:  # type: ignore[override]
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.constructor.ConstructorError(
                None, None, "anchors and aliases (&x / *x) are not allowed", event.start_mark
            )
        return super().compose_node(parent, index)

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:  # type: ignore[override]
        """Refuse a key given twice: YAML would silently keep the last one (``n_trials`` written twice)."""
        seen: set[Any] = set()
        for key_node, _ in node.value if isinstance(node, yaml.MappingNode) else ():
            if isinstance(key_node, yaml.ScalarNode):
                key = self.construct_object(key_node)
                try:
                    if key in seen:  # also true and 1, or 1 and 1.0: Python makes them one key
                        raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
                    seen.add(key)
                except TypeError:  # an unhashable key is refused by PyYAML itself
                    pass
        return super().construct_mapping(node, deep)


def load_yaml_text(text: str, *, source: str, error: type[Exception]) -> Any:
    """Parse YAML text; ``error(source, path, problem, fix)`` is raised on any problem."""
    try:
        return yaml.load(text, Loader=_NoAliasLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else "<file>"
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise error(source, where, f"invalid YAML: {problem}", "fix the syntax at that line") from None
    except (RecursionError, ValueError, OverflowError) as exc:
        raise error(source, "<file>", f"invalid YAML: {type(exc).__name__}", "simplify the document") from None


def load_yaml_file(path: Path, *, source: str, error: type[Exception]) -> Any:
    """Read a UTF-8 YAML file of bounded size and parse it."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise error(source, "<file>", f"cannot read: {exc.strerror or exc}", "check the path and its permissions") from None
    if len(raw) > _MAX_BYTES:
        raise error(source, "<file>", f"file is {len(raw)} bytes, over the {_MAX_BYTES} limit", "specs are small YAML files")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise error(source, "<file>", f"not UTF-8 (byte {exc.start})", "save the file as UTF-8") from None
    return load_yaml_text(text, source=source, error=error)
