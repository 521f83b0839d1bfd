"""YAML documents read strictly: a key written twice in one mapping is an error.

PyYAML keeps the last of two equal keys without a word, so a catalog that lists a plan
twice, or a price twice in one charge, would load the second silently. Here the
document is refused, with the line of each.

>>> load("a: 1\\nb: 2\\na: 3\\n")  # doctest: +ELLIPSIS
Traceback (most recent call last):
yaml.constructor.ConstructorError: while reading a mapping
...
the key 'a' is written twice (first on line 1)
...
"""

from __future__ import annotations

from typing import Any

import yaml
from yaml.constructor import ConstructorError
from yaml.nodes import MappingNode

_MERGE = "tag:yaml.org,2002:merge"


def _check(loader: yaml.BaseLoader | yaml.SafeLoader, node: MappingNode) -> None:
    first_line: dict[Any, int] = {}
    for key_node, _ in node.value:
        if key_node.tag == _MERGE:  # `<<: *defaults` may be overridden by design
            continue
        key = loader.construct_object(key_node, deep=True)
        try:
            seen = first_line.get(key)
        except TypeError:  # an unhashable key: the constructor reports it
            continue
        if seen is not None:
            raise ConstructorError(
                "while reading a mapping",
                node.start_mark,
                f"the key {key!r} is written twice (first on line {seen + 1})",
                key_node.start_mark,
            )
        first_line[key] = key_node.start_mark.line


class _Safe(yaml.SafeLoader):
    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
        _check(self, node)
        return super().construct_mapping(node, deep)


class _Text(yaml.BaseLoader):
    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
        _check(self, node)
        return super().construct_mapping(node, deep)


def load(text: str) -> Any:
    """`yaml.safe_load`, refusing a key written twice in a mapping."""
    return yaml.load(text, Loader=_Safe)  # noqa: S506 (a safe loader)


def load_text(text: str) -> Any:
    """Every scalar kept as the text written (`yaml.BaseLoader`), refusing a key written
    twice in a mapping."""
    return yaml.load(text, Loader=_Text)  # noqa: S506 (a loader that builds only text)
