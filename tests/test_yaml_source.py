"""Reading YAML: the same data as PyYAML's safe loader, plus the line of every key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from rotator.config.yaml_source import load_yaml
from rotator.errors import ConfigError

EXAMPLE = Path(__file__).parent.parent / "config.example.yaml"

SCALARS = """\
plain: web
quoted: "yes"
single: 'null'
flag: yes
off_flag: off
count: 42
octal: 0o17
ratio: 0.5
nothing: ~
empty:
when: 2026-11-25
tagged: !!str 7
list: [1, two, {three: 3}]
nested:
  deeper:
    - a
    - b: c
"""


@pytest.mark.parametrize(
    "text",
    [SCALARS, EXAMPLE.read_text(), "", "just a string\n", "- 1\n- 2\n"],
    ids=["scalars", "config.example.yaml", "empty", "scalar document", "sequence document"],
)
def test_data_is_what_pyyaml_safe_load_gives(text: str) -> None:
    expected = yaml.safe_load(text)
    assert load_yaml(text, "rotator.yaml").data == ({} if expected is None else expected)


def test_every_key_path_knows_its_line() -> None:
    doc = load_yaml(SCALARS, "rotator.yaml")
    assert doc.line_of(("plain",)) == 1
    assert doc.line_of(("list", 2, "three")) == 13
    assert doc.line_of(("nested", "deeper", 1, "b")) == 17


def test_keys_on_their_enclosing_keys_line_keep_no_entry_of_their_own() -> None:
    doc = load_yaml("web: {key: {id: k1}, vault: {path: apps/web}}\napi: {every: 1d}\n", "r.yaml")
    assert doc.lines == {(): 1, ("api",): 2}
    assert doc.line_of(("web", "vault", "path")) == 1
    assert doc.line_of(("api", "every")) == 2


def test_a_path_without_its_own_line_takes_the_enclosing_keys() -> None:
    doc = load_yaml(SCALARS, "rotator.yaml")
    assert doc.line_of(("nested", "deeper", 0, "missing")) == 16


ANCHORED = """\
defaults: &weekly
  every: 7d
  jitter: 1h
web:
  schedule: *weekly
api:
  schedule: *weekly
"""


def test_anchors_and_aliases_resolve_as_in_pyyaml() -> None:
    doc = load_yaml(ANCHORED, "rotator.yaml")
    assert doc.data == yaml.safe_load(ANCHORED)
    assert doc.line_of(("api", "schedule")) == 7


def test_a_duplicate_key_names_both_lines() -> None:
    with pytest.raises(ConfigError) as error:
        load_yaml("a: 1\nb: 2\na: 3\n", "rotator.yaml")
    assert "rotator.yaml:3" in str(error.value)
    assert "first defined at line 1" in str(error.value)


def test_a_duplicate_key_is_found_in_an_anchored_document_too() -> None:
    with pytest.raises(ConfigError, match="first defined at line 1"):
        load_yaml("a: &x 1\nb: *x\na: 3\n", "rotator.yaml")


def test_several_documents_in_one_file_are_refused() -> None:
    with pytest.raises(ConfigError, match="found another document"):
        load_yaml("a: 1\n---\nb: 2\n", "rotator.yaml")


def test_an_unknown_tag_is_refused_with_its_line() -> None:
    with pytest.raises(ConfigError) as error:
        load_yaml("a: 1\nb: !Ref other\n", "rotator.yaml")
    assert "rotator.yaml:2" in str(error.value)
