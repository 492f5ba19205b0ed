"""The eager multi-body loop's settings: two local searches (round 1, later rounds)."""

from __future__ import annotations

import pytest

from cryoflow.errors import ConfigError
from cryoflow.kernels.align import SearchParams
from cryoflow.kernels.heterogeneity.multibody_loop import MultibodyParams


def test_defaults_are_local_searches_with_a_wider_first_round() -> None:
    p = MultibodyParams()
    assert p.first_search.global_step_deg is None and p.later_search.global_step_deg is None
    assert p.first_search.local_levels[0] == (6.0, 24.0)
    assert p.first_search.local_shift_windows == ((3.0, 1.0),)
    assert p.later_search.local_shift_windows == ()
    assert p.first_search.max_shift_px == p.later_search.max_shift_px == 3.0


def test_global_or_empty_searches_are_refused() -> None:
    with pytest.raises(ConfigError, match="local"):
        MultibodyParams(later_search=SearchParams(20.0, ((2.0, 6.0),)))
    with pytest.raises(ConfigError, match="first_search needs at least one"):
        MultibodyParams(first_search=SearchParams(None, ()))
