"""Reading a YAML file into plain data while remembering where each key stood.

PyYAML's composed node tree carries line numbers; this module walks it so that
a validation error found later at ``("policies", "web", "schedule")`` can be
reported as ``rotator.yaml:14``. Duplicate mapping keys, which PyYAML would
silently let the last one win, are errors here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

from rotator.errors import ConfigError

Location = tuple[str | int, ...]
# libyaml's parser keeps the same marks and is many times faster on large policy files.
_Loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass
class YamlDocument:
    """Parsed YAML data plus the 1-based line of every key path in it."""

    data: Any
    lines: dict[Location, int] = field(default_factory=dict)

    def line_of(self, loc: Location) -> int | None:
        """The line of ``loc``, or of the closest enclosing key that has one."""
        for end in range(len(loc), -1, -1):
            line = self.lines.get(tuple(loc[:end]))
            if line is not None:
                return line
        return None


def load_yaml(text: str, source: str) -> YamlDocument:
    """Parse ``text`` (read from ``source``); raise ``ConfigError`` naming the line on error."""
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        doc = YamlDocument(data={})
        if node is not None:
            doc.data = _build(loader, node, (), doc.lines, source)
        return doc
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{source}:{mark.line + 1}" if mark else source
        raise ConfigError(
            f"is not valid YAML ({exc.problem or exc.context}); fix the syntax at that line",
            source=where,
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"is not valid YAML ({exc})", source=source) from None
    finally:
        loader.dispose()


def _build(
    loader: yaml.SafeLoader,
    node: yaml.Node,
    loc: Location,
    lines: dict[Location, int],
    source: str,
) -> Any:
    lines.setdefault(loc, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            if key in result:
                first = lines[(*loc, key)]
                raise ConfigError(
                    f"duplicate key {key!r} at {dotted((*loc, key))} (first defined at line "
                    f"{first}); each name may appear once, rename or merge one of them",
                    source=f"{source}:{key_node.start_mark.line + 1}",
                )
            lines[(*loc, key)] = key_node.start_mark.line + 1
            result[key] = _build(loader, value_node, (*loc, key), lines, source)
        return result
    if isinstance(node, yaml.SequenceNode):
        return [
            _build(loader, item, (*loc, index), lines, source)
            for index, item in enumerate(node.value)
        ]
    return loader.construct_object(node, deep=True)


def dotted(loc: Location) -> str:
    return ".".join(str(part) for part in loc) or "(top level)"
