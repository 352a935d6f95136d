"""YAML from users, read with limits set before anything is built.

A manifest is refused, with one line, when it is larger than Kubernetes stores an object (1.5 MiB),
is not UTF-8, nests deeper than :data:`MAX_DEPTH`, expands through aliases to more than
:data:`MAX_VALUES` values (a "billion laughs" of a few lines), or repeats a key in a mapping (the
API server's strict decoding refuses that; PyYAML would silently keep the last one). Depth and
expansion are counted on the parser's event stream, which builds nothing, so a hostile file is
refused in milliseconds instead of exhausting memory or the recursion limit.
"""

from __future__ import annotations

from typing import Any

import yaml

MAX_BYTES = 1_572_864  # 1.5 MiB: the largest object Kubernetes (etcd) keeps
MAX_DEPTH = 64
MAX_VALUES = 200_000
Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class UnsafeYaml(ValueError):
    """The text is refused; ``str()`` is the one line to show, ``path`` the field if known."""

    def __init__(self, message: str, path: str = "") -> None:
        super().__init__(message)
        self.path = path


def load_all(data: bytes) -> list[Any]:
    """Every document of ``data``, or :class:`UnsafeYaml` (``yaml.YAMLError`` for bad syntax)."""
    if len(data) > MAX_BYTES:
        raise UnsafeYaml(f"{len(data):,} bytes: Kubernetes keeps objects of at most 1.5 MiB")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UnsafeYaml(f"not UTF-8 text (byte 0x{data[exc.start]:02x} at offset "
                         f"{exc.start})") from None
    _check_shape(text)
    loader = Loader(text)
    try:
        documents = []
        while loader.check_node():
            node = loader.get_node()
            _check_keys(node, "")
            documents.append(loader.construct_document(node))
        return documents
    finally:
        loader.dispose()


def _check_shape(text: str) -> None:
    """Depth and the number of values after alias expansion, from the event stream."""
    open_nodes: list[list[Any]] = []  # [values so far, anchor] per open mapping/sequence
    sizes: dict[str, int] = {}  # anchor -> values it expands to
    total = 0
    for event in yaml.parse(text, Loader=Loader):
        if isinstance(event, yaml.CollectionStartEvent):
            if len(open_nodes) >= MAX_DEPTH:
                raise UnsafeYaml(f"nested deeper than {MAX_DEPTH} levels (line "
                                 f"{event.start_mark.line + 1})")
            open_nodes.append([1, event.anchor])
            continue
        if isinstance(event, yaml.CollectionEndEvent):
            count, anchor = open_nodes.pop()
        elif isinstance(event, yaml.ScalarEvent):
            count, anchor = 1, event.anchor
        elif isinstance(event, yaml.AliasEvent):
            count, anchor = sizes.get(event.anchor, 1), None
        else:
            continue
        if anchor:
            sizes[anchor] = count
        if open_nodes:
            open_nodes[-1][0] += count
            if open_nodes[-1][0] > MAX_VALUES:
                raise UnsafeYaml(f"expands to more than {MAX_VALUES:,} values (YAML aliases?)")
        else:
            total += count
            if total > MAX_VALUES:
                raise UnsafeYaml(f"expands to more than {MAX_VALUES:,} values (YAML aliases?)")


def _check_keys(node: yaml.Node, path: str) -> None:
    if isinstance(node, yaml.MappingNode):
        seen: dict[Any, int] = {}
        for key, value in node.value:
            name = key.value if isinstance(key, yaml.ScalarNode) else None
            where = f"{path}.{name}" if path else str(name)
            if name is not None and name != "<<":
                if name in seen:
                    raise UnsafeYaml(f"duplicate key {name!r} (lines {seen[name]} and "
                                     f"{key.start_mark.line + 1})", where)
                seen[name] = key.start_mark.line + 1
            _check_keys(value, where)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _check_keys(item, f"{path}[{index}]")
