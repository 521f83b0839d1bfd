"""YAML documents read strictly: a key written twice in one mapping is an error.

PyYAML keeps the last of two equal keys without a word, so a catalog that lists a plan
twice, or a price twice in one charge, would load the second silently. Here the
document is refused, with the line of each. Keys a merge (`<<: *defaults`) brings in
may be overridden, as YAML intends.

>>> load("a: 1\\nb: 2\\na: 3\\n")  # doctest: +ELLIPSIS
Traceback (most recent call last):
yaml.constructor.ConstructorError: while reading a mapping
...
the key 'a' is written twice (first on line 1)
...
>>> load("base: &b {a: 1}\\nmid: &m {<<: *b, a: 2}\\ntop: {<<: *m, a: 3}\\n")["top"]
{'a': 3}
"""

from __future__ import annotations

from typing import Any

import yaml
from yaml.constructor import ConstructorError
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

_MERGE = "tag:yaml.org,2002:merge"


def _check(loader: yaml.BaseLoader | yaml.SafeLoader, root: Node) -> None:
    """Every mapping of the composed document, before any merge is applied to it."""
    seen: set[int] = set()
    pending = [root]
    while pending:
        node = pending.pop()
        if id(node) in seen:  # an alias: checked where its anchor is
            continue
        seen.add(id(node))
        if isinstance(node, SequenceNode):
            pending.extend(node.value)
        elif isinstance(node, MappingNode):
            first_line: dict[Any, int] = {}
            for key_node, value_node in node.value:
                pending.extend([key_node, value_node])
                if key_node.tag == _MERGE or not isinstance(key_node, ScalarNode):
                    continue
                key = loader.construct_object(key_node)
                try:
                    line = first_line.get(key)
                except TypeError:  # an unhashable key: the constructor reports it
                    continue
                if line is not None:
                    raise ConstructorError(
                        "while reading a mapping",
                        node.start_mark,
                        f"the key {key!r} is written twice (first on line {line + 1})",
                        key_node.start_mark,
                    )
                first_line[key] = key_node.start_mark.line


class _Safe(yaml.SafeLoader):
    def construct_document(self, node: Node) -> Any:
        _check(self, node)
        return super().construct_document(node)


class _Text(yaml.BaseLoader):
    def construct_document(self, node: Node) -> Any:
        _check(self, node)
        return super().construct_document(node)


def load(text: str) -> Any:
    """`yaml.safe_load`, refusing a key written twice in a mapping."""
    return yaml.load(text, Loader=_Safe)  # noqa: S506 (a safe loader)


def load_text(text: str) -> Any:
    """Every scalar kept as the text written (`yaml.BaseLoader`), refusing a key written
    twice in a mapping."""
    return yaml.load(text, Loader=_Text)  # noqa: S506 (a loader that builds only text)
