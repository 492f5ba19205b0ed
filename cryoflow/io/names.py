"""Allow-list validation of dataset, tomogram, step and result names.

A name becomes a path component inside the store, so only a conservative allow-list is
accepted: it starts with a letter or digit, continues with letters, digits, ``.``, ``_`` or
``-``, is at most 128 characters long and never contains ``..``. Names starting with ``.`` are
reserved for cryoflow's temporary nodes (``.tmp-*``, ``.trash-*``).
"""

from __future__ import annotations

import re

from cryoflow.errors import InvalidNameError

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
NAME_RULE = (
    "names must match ^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$ (start with a letter or digit; "
    "then letters, digits, '.', '_' or '-'; at most 128 characters) and must not contain '..'"
)


def is_valid_name(name: object) -> bool:
    """True when ``name`` is a string on the allow-list."""
    return isinstance(name, str) and bool(NAME_PATTERN.fullmatch(name)) and ".." not in name


def validate_name(name: object, what: str = "name") -> str:
    """Return ``name`` unchanged when it is on the allow-list.

    Parameters
    ----------
    name : object
        The candidate (a tomogram name, a result step or key, ...).
    what : str
        What the name is, used in the error message (e.g. ``"tomogram name"``).

    Raises
    ------
    InvalidNameError
        Naming the bad value and the rule.
    """
    if not isinstance(name, str):
        raise InvalidNameError(f"{what} must be a string, got {type(name).__name__} {name!r}")
    if not is_valid_name(name):
        raise InvalidNameError(f"invalid {what} {name!r}: {NAME_RULE}")
    return name
