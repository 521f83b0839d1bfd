"""pricing_rules.yamltext: YAML that refuses a key written twice, and reads the rest as
PyYAML does."""

from __future__ import annotations

import pytest
import yaml

from pricing_rules.yamltext import load, load_text

MERGES = [
    # a merged mapping that overrides a key it merged, itself merged further down
    "base: &base {a: 1}\ngroup: {inner: &mid {<<: *base, a: 3}}\ntop: {<<: *mid}\n",
    # the anchor inside a list
    "l: [&x {<<: {a: 1}, a: 2}]\nt: {<<: *x, b: 1}\n",
    "base: &b {a: 1}\nmid: &m {<<: *b, a: 2}\ntop: {<<: *m, a: 3}\n",
    # a list of merges
    "a: &a {x: 1}\nb: &b {y: 2}\nc: {<<: [*a, *b], x: 3}\n",
]


@pytest.mark.parametrize("text", MERGES)
def test_merges_read_as_pyyaml_reads_them(text: str) -> None:
    assert load(text) == yaml.safe_load(text)


@pytest.mark.parametrize(
    ("text", "key", "lines"),
    [
        ("a: 1\nb: 2\na: 3\n", "a", (1, 3)),
        ("p:\n  x: {u: 1, u: 2}\n", "u", (2, 2)),
        ("- {id: 1}\n- {id: 2, id: 3}\n", "id", (2, 2)),
        ("m: &m {a: 1}\nn: {<<: *m, b: 1, b: 2}\n", "b", (2, 2)),
    ],
)
def test_a_key_written_twice_is_refused_with_its_lines(
    text: str, key: str, lines: tuple[int, int]
) -> None:
    for reader in (load, load_text):
        with pytest.raises(yaml.YAMLError) as raised:
            reader(text)
        message = str(raised.value)
        assert f"the key {key!r} is written twice (first on line {lines[0]})" in message
        assert f"line {lines[1]}, column" in message


def test_text_keeps_scalars_as_written() -> None:
    assert load_text("country: NO\nid: 0012\n") == {"country": "NO", "id": "0012"}
