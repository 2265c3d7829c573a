"""The survey scales and their bands, defined once in aftersale.core.survey_scales."""

from __future__ import annotations

from aftersale.core.survey_scales import (
    CSAT_DETRACTOR_MAX,
    CSAT_SATISFIED_MIN,
    NPS_DETRACTOR_MAX,
    NPS_PASSIVE_MIN,
    NPS_PROMOTER_MIN,
    SURVEY_KINDS,
    SURVEY_SCALES,
    in_scale,
    scale,
)


def test_each_kind_has_one_button_per_score() -> None:
    assert set(SURVEY_KINDS) == set(SURVEY_SCALES)
    assert scale("nps") == list(range(11))
    assert scale("csat") == [1, 2, 3, 4, 5]
    assert scale("ces") == [1, 2, 3, 4, 5, 6, 7]
    assert all(in_scale(kind, n) for kind in SURVEY_KINDS for n in scale(kind))
    assert not in_scale("nps", 11) and not in_scale("csat", 0) and not in_scale("ces", 8)


def test_nps_bands_split_the_scale_in_three() -> None:
    detractors = [n for n in scale("nps") if n <= NPS_DETRACTOR_MAX]
    passives = [n for n in scale("nps") if NPS_PASSIVE_MIN <= n < NPS_PROMOTER_MIN]
    promoters = [n for n in scale("nps") if n >= NPS_PROMOTER_MIN]
    assert (detractors, passives, promoters) == (list(range(7)), [7, 8], [9, 10])
    assert [n for n in scale("csat") if n >= CSAT_SATISFIED_MIN] == [4, 5]
    assert [n for n in scale("csat") if n <= CSAT_DETRACTOR_MAX] == [1, 2]
