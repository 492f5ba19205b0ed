"""``cryoflow classify --realign-deg``: the local levels each multiref round searches."""

from __future__ import annotations

import pytest

from cryoflow.pipelines.stages.base import ParamsError
from cryoflow.pipelines.stages.classify import ClassifyParams
from cryoflow.pipelines.stages.classify_rounds import _settings, realign_levels


def test_the_levels_cover_the_radius_coarse_to_fine() -> None:
    assert realign_levels(0.0) == ()
    (s1, r1), (s2, r2) = realign_levels(20.0)
    assert (s1, r1) == (10.0, 20.0)
    assert r2 == s1 and s2 < s1  # the fine level spans one coarse step


def test_the_option_reaches_the_rounds_settings_and_bad_values_are_refused() -> None:
    on = _settings(ClassifyParams(set="s", classes=2, realign_deg=12.0), 2, "cpu")
    assert on["classify_search"]["local_levels"] == realign_levels(12.0)
    off = _settings(ClassifyParams(set="s", classes=2), 2, "cpu")
    assert off["classify_search"]["local_levels"] == ()
    for bad in (-1.0, 90.0):
        with pytest.raises(ParamsError, match="--realign-deg"):
            ClassifyParams(set="s", classes=2, realign_deg=bad)
