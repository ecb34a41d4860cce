"""Reading a YAML file into plain data while remembering where each key stood.

PyYAML's parser events carry line numbers; this module builds the data from
them so that a validation error found later at ``("policies", "web",
"schedule")`` can be reported as ``rotator.yaml:14``. Duplicate mapping keys,
which PyYAML would silently let the last one win, are errors here.

Building from events skips PyYAML's node tree, which costs most of the time on
files with thousands of policies. Documents using anchors, merge keys, complex
keys or explicit collection tags are built from the node tree instead, with
PyYAML's own semantics, within bounds: aliases may not contain themselves, and
the data they expand to is capped (a "billion laughs" file of a few hundred
bytes would otherwise expand to a billion values).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.resolver import BaseResolver

from rotator.errors import ConfigError

Location = tuple[str | int, ...]
# libyaml's parser keeps the same marks and is many times faster on large policy files.
_Loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_STR = "tag:yaml.org,2002:str"
_MERGE = "tag:yaml.org,2002:merge"
_DEFAULT_TAGS = (None, "!", BaseResolver.DEFAULT_MAPPING_TAG, BaseResolver.DEFAULT_SEQUENCE_TAG)
#: Values built from the node tree, aliases expanded, when the file is small; larger files
#: may expand to one value per two characters of text, more than a file without aliases has.
MIN_EXPANDED_VALUES = 100_000


class _NeedsNodeTree(Exception):
    """The document uses a feature only the node tree resolves (anchors, merge keys...)."""


@dataclass
class YamlDocument:
    """Parsed YAML data plus the 1-based line of its key paths.

    A path whose line is its enclosing path's (every key of a one-line ``{...}``
    policy) may have no entry of its own: ``line_of`` answers for it, and 10,000
    such policies keep 10,000 entries instead of 90,000 (about 10 MB while the
    file is checked).
    """

    data: Any
    lines: dict[Location, int] = field(default_factory=dict)

    def line_of(self, loc: Location) -> int | None:
        """The line of ``loc``, or of the closest enclosing key that has one."""
        return _nearest_line(self.lines, loc)


def _nearest_line(lines: dict[Location, int], loc: Location) -> int | None:
    for end in range(len(loc), -1, -1):
        line = lines.get(tuple(loc[:end]))
        if line is not None:
            return line
    return None


_Builder = Callable[[yaml.SafeLoader, YamlDocument, str], None]


def load_yaml(text: str, source: str) -> YamlDocument:
    """Parse ``text`` (read from ``source``); raise ``ConfigError`` naming the line on error."""
    try:
        return _parse(text, source, _document_from_events)
    except _NeedsNodeTree:
        limit = max(MIN_EXPANDED_VALUES, len(text) // 2)
        return _parse(text, source, functools.partial(_document_from_nodes, limit=limit))


def _parse(text: str, source: str, build: _Builder) -> YamlDocument:
    loader = _Loader(text)
    try:
        doc = YamlDocument(data={})
        build(loader, doc, source)
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


def _document_from_nodes(
    loader: yaml.SafeLoader, doc: YamlDocument, source: str, *, limit: int
) -> None:
    node = loader.get_single_node()
    if node is not None:
        doc.data = _NodeBuilder(loader, doc.lines, source, limit).value(node, ())


class _NodeBuilder:
    """Builds plain data from PyYAML's node tree, counting every value aliases expand to."""

    def __init__(
        self, loader: yaml.SafeLoader, lines: dict[Location, int], source: str, limit: int
    ) -> None:
        self.loader = loader
        self.lines = lines
        self.source = source
        self.limit = limit
        self.built = 0
        #: Collections being built right now: meeting one again is a recursive alias.
        self.open: set[int] = set()

    def value(self, node: yaml.Node, loc: Location) -> Any:
        self._count(node, loc)
        self.lines.setdefault(loc, node.start_mark.line + 1)
        if not isinstance(node, yaml.MappingNode | yaml.SequenceNode):
            return self.loader.construct_object(node, deep=True)
        self.open.add(id(node))
        try:
            if isinstance(node, yaml.SequenceNode):
                return [self.value(item, (*loc, index)) for index, item in enumerate(node.value)]
            self.loader.flatten_mapping(node)
            result: dict[Any, Any] = {}
            for key_node, value_node in node.value:
                key = self.key(key_node, loc)
                key_line = key_node.start_mark.line + 1
                _check_unique(key, result, loc, key_line, self.lines, self.source)
                self.lines[(*loc, key)] = key_line
                result[key] = self.value(value_node, (*loc, key))
            return result
        finally:
            self.open.discard(id(node))

    def key(self, node: yaml.Node, loc: Location) -> Any:
        if not isinstance(node, yaml.ScalarNode):
            raise ConfigError(
                f"a key of {dotted(loc)} is a list or a mapping; keys must be plain names",
                source=f"{self.source}:{node.start_mark.line + 1}",
            )
        return self.loader.construct_object(node, deep=True)

    def _count(self, node: yaml.Node, loc: Location) -> None:
        where = f"{self.source}:{node.start_mark.line + 1}"
        if id(node) in self.open:
            raise ConfigError(
                f"{dotted(loc)} refers to itself through an alias (*name inside its own "
                "&name); an alias must not contain itself",
                source=where,
            )
        self.built += 1
        if self.built > self.limit:
            raise ConfigError(
                f"expands to more than {self.limit:,} values through its aliases (*name); "
                "such a file is refused as an alias bomb: repeat less through aliases",
                source=where,
            )


def _document_from_events(loader: yaml.SafeLoader, doc: YamlDocument, source: str) -> None:
    _EventBuilder(loader, doc.lines, source).document(doc)


class _EventBuilder:
    """Builds plain data from parser events, resolving scalars as PyYAML's composer does."""

    def __init__(self, loader: yaml.SafeLoader, lines: dict[Location, int], source: str) -> None:
        self.loader = loader
        self.lines = lines
        self.source = source
        # Bound once: these run for every event of files with thousands of policies.
        self.next_event: Callable[[], Any] = loader.get_event
        self.at_end: Callable[[type[yaml.Event]], bool] = loader.check_event
        resolvers = loader.yaml_implicit_resolvers
        # A plain scalar whose first character no implicit resolver claims is a string;
        # SafeLoader has no path resolvers, so PyYAML would resolve it to str too.
        self.always_str = bool(None not in resolvers and not loader.yaml_path_resolvers)
        self.claimed_first_chars = frozenset(resolvers)
        # Each policy repeats the same keys: one string each instead of one per occurrence
        # (about 5 MB of the parse's peak at 10,000 policies).
        self.key_names: dict[str, str] = {}

    def document(self, doc: YamlDocument) -> None:
        self.next_event()
        if self.at_end(yaml.StreamEndEvent):
            return
        self.next_event()
        doc.data = self.value((), None, 0)
        self.next_event()
        if not self.at_end(yaml.StreamEndEvent):
            raise _NeedsNodeTree  # several documents: the node tree reports it

    def value(self, loc: Location, line: int | None, enclosing: int) -> Any:
        """The value at ``loc``; ``line`` is its key's, None where the value's own start counts.

        The line is recorded only where it differs from ``enclosing``, the line ``line_of``
        would otherwise answer for ``loc``.
        """
        event = self.next_event()
        if event.anchor is not None or isinstance(event, yaml.AliasEvent):
            raise _NeedsNodeTree
        if line is None:
            line = event.start_mark.line + 1
        if line != enclosing:
            self.lines[loc] = line
        if isinstance(event, yaml.ScalarEvent):
            return self.scalar(event)
        if event.tag not in _DEFAULT_TAGS:
            raise _NeedsNodeTree
        if isinstance(event, yaml.SequenceStartEvent):
            items: list[Any] = []
            while not self.at_end(yaml.SequenceEndEvent):
                items.append(self.value((*loc, len(items)), None, line))
            self.next_event()
            return items
        result: dict[Any, Any] = {}
        while not self.at_end(yaml.MappingEndEvent):
            key_event = self.next_event()
            if key_event.anchor is not None or not isinstance(key_event, yaml.ScalarEvent):
                raise _NeedsNodeTree
            key = self.scalar(key_event)
            if type(key) is str:
                key = self.key_names.setdefault(key, key)
            key_line: int = key_event.start_mark.line + 1  # type: ignore[union-attr]
            _check_unique(key, result, loc, key_line, self.lines, self.source)
            result[key] = self.value((*loc, key), key_line, line)
        self.next_event()
        return result

    def scalar(self, event: Any) -> Any:
        value = event.value
        tag = event.tag
        if tag is None or tag == "!":
            if self.always_str and (
                not event.implicit[0] or (value and value[0] not in self.claimed_first_chars)
            ):
                return value
            tag = self.loader.resolve(  # type: ignore[no-untyped-call]  # untyped in types-PyYAML
                yaml.ScalarNode, value, event.implicit
            )
        if tag == _STR:
            return value
        if tag == _MERGE:
            raise _NeedsNodeTree
        node = yaml.ScalarNode(tag, value, event.start_mark, event.end_mark, event.style)
        return self.loader.construct_object(node, deep=True)


def _check_unique(
    key: Any,
    mapping: dict[Any, Any],
    loc: Location,
    line: int,
    lines: dict[Location, int],
    source: str,
) -> None:
    """Refuse a key seen before in ``mapping``, naming the line of both."""
    if key in mapping:
        raise ConfigError(
            f"duplicate key {key!r} at {dotted((*loc, key))} (first defined at line "
            f"{_nearest_line(lines, (*loc, key))}); each name may appear once, rename or merge "
            "one of them",
            source=f"{source}:{line}",
        )


def dotted(loc: Location) -> str:
    return ".".join(str(part) for part in loc) or "(top level)"
