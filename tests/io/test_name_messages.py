"""Name validation messages say what was received and what is allowed."""

from __future__ import annotations

import pytest

from cryoflow.errors import InvalidNameError
from cryoflow.io.names import NAME_RULE, validate_name


def test_a_non_string_name_is_named_with_its_type() -> None:
    with pytest.raises(InvalidNameError) as info:
        validate_name(5)
    assert str(info.value) == "name must be a string, got int 5"
    with pytest.raises(
        InvalidNameError, match=r"^tomogram name must be a string, got NoneType None$"
    ):
        validate_name(None, "tomogram name")


def test_a_bad_name_is_quoted_with_the_rule() -> None:
    with pytest.raises(InvalidNameError) as info:
        validate_name("../etc")
    assert str(info.value) == f"invalid name '../etc': {NAME_RULE}"
    with pytest.raises(InvalidNameError, match=r"^invalid result key 'a\.\.b': names must match"):
        validate_name("a..b", "result key")
