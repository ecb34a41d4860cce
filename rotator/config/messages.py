"""pydantic's validation errors in rotator's voice: what is wrong, what is allowed, what to do.

Every error type the configuration models can raise has its own sentence; an
unforeseen type keeps pydantic's text with a pointer to fix the value, so no
error is ever dropped. The input is only repeated where it cannot be a secret
(numbers, booleans, choices); credentials are checked elsewhere and never
reach pydantic as text.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from pydantic_core import ErrorDetails

_QUOTED = re.compile(r"'([^']*)'")
_MAX_SHOWN = 40


def _shown(value: Any) -> str:
    """A short rendering of a rejected value: numbers and words, never long text."""
    if isinstance(value, bool | int | float):
        return repr(value)
    if isinstance(value, str) and len(value) <= _MAX_SHOWN:
        return repr(value)
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return "this value"


def _choices(err: ErrorDetails) -> str:
    expected = str((err.get("ctx") or {}).get("expected", ""))
    found = _QUOTED.findall(expected) or [expected]
    return ", ".join(found)


def _limit(err: ErrorDetails, key: str) -> Any:
    return (err.get("ctx") or {}).get(key)


_SENTENCES: dict[str, Callable[[ErrorDetails], str]] = {
    "missing": lambda e: "this required key is missing; add it",
    "enum": lambda e: f"{_shown(e['input'])} is not a choice here; use one of: {_choices(e)}",
    "literal_error": lambda e: (
        f"{_shown(e['input'])} is not a choice here; use one of: {_choices(e)}"
    ),
    "less_than_equal": lambda e: (
        f"{_shown(e['input'])} is too large: at most {_limit(e, 'le')} is allowed"
    ),
    "less_than": lambda e: (
        f"{_shown(e['input'])} is too large: it must be less than {_limit(e, 'lt')}"
    ),
    "greater_than_equal": lambda e: (
        f"{_shown(e['input'])} is too small: at least {_limit(e, 'ge')} is required"
    ),
    "greater_than": lambda e: (
        f"{_shown(e['input'])} is too small: it must be more than {_limit(e, 'gt')}"
    ),
    "int_type": lambda e: f"{_shown(e['input'])} is not a whole number; write one, e.g. 8080",
    "int_parsing": lambda e: f"{_shown(e['input'])} is not a whole number; write one, e.g. 8080",
    "int_from_float": lambda e: (
        f"{_shown(e['input'])} is not a whole number; drop the fraction, e.g. 4"
    ),
    "float_type": lambda e: f"{_shown(e['input'])} is not a number; write one, e.g. 10 or 2.5",
    "float_parsing": lambda e: f"{_shown(e['input'])} is not a number; write one, e.g. 10 or 2.5",
    "bool_type": lambda e: f"{_shown(e['input'])} is not true or false; write one of them",
    "bool_parsing": lambda e: f"{_shown(e['input'])} is not true or false; write one of them",
    "string_type": lambda e: f"{_shown(e['input'])} is not text; put the value in quotes",
    "string_too_short": lambda e: (
        "must not be empty; write a value or remove the key"
        if _limit(e, "min_length") == 1
        else f"is too short: at least {_limit(e, 'min_length')} characters"
    ),
    "string_too_long": lambda e: (
        f"is too long: at most {_limit(e, 'max_length')} characters; shorten it"
    ),
    "string_pattern_mismatch": lambda e: (
        f"{_shown(e['input'])} does not have the required form "
        f"(pattern {_limit(e, 'pattern')}); see config.example.yaml"
    ),
    "dict_type": lambda e: f"must be a mapping of keys to values, not {_shown(e['input'])}",
    "model_type": lambda e: f"must be a mapping of keys to values, not {_shown(e['input'])}",
    "model_attributes_type": lambda e: (
        f"must be a mapping of keys to values, not {_shown(e['input'])}"
    ),
    "list_type": lambda e: f"must be a list, e.g. [a, b], not {_shown(e['input'])}",
    "union_tag_invalid": lambda e: (
        f"{str(_limit(e, 'discriminator')).strip(chr(39))} {_shown(_limit(e, 'tag'))} is not "
        "known; use one of: "
        f"{', '.join(_QUOTED.findall(str(_limit(e, 'expected_tags'))))}"
    ),
    "union_tag_not_found": lambda e: (
        f"add {str(_limit(e, 'discriminator')).strip(chr(39))}: it says which kind of entry this is"
    ),
    "value_error": lambda e: e["msg"].removeprefix("Value error, "),
    "assertion_error": lambda e: e["msg"].removeprefix("Assertion failed, "),
}


def sentence(err: ErrorDetails) -> str:
    """What is wrong with one value, what is allowed, and what to do."""
    translate = _SENTENCES.get(err["type"])
    if translate is not None:
        return translate(err)
    return f"{err['msg'][0].lower()}{err['msg'][1:]}; fix this value"
