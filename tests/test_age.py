"""Age at the edge: the month a minor comes of age, and an age claim his birth date refutes."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from baken.age import claimed_minor, eighteenth_birthday, is_minor, minor_until

TODAY = dt.date(2026, 12, 4)


@given(st.dates(min_value=dt.date(1990, 1, 1), max_value=TODAY))
def test_minor_until_is_the_first_of_the_month_after_the_18th_birthday(born: dt.date) -> None:
    until = minor_until(born, TODAY)
    if not is_minor(born, TODAY):
        assert until is None
        return
    assert until is not None
    birthday = eighteenth_birthday(born)
    assert until.day == 1
    assert birthday < until <= birthday + dt.timedelta(days=31)  # never early, a month at most


def test_born_on_29_february_he_comes_of_age_on_1_march() -> None:
    assert eighteenth_birthday(dt.date(2008, 2, 29)) == dt.date(2026, 3, 1)
    assert minor_until(dt.date(2008, 12, 31), dt.date(2026, 12, 30)) == dt.date(2027, 1, 1)


def test_a_claim_the_date_of_birth_refutes_is_refused() -> None:
    sixteen = dt.date(2010, 5, 5)
    assert claimed_minor(None, sixteen, TODAY) is True
    assert claimed_minor(True, sixteen, TODAY) is True
    assert claimed_minor(False, None, TODAY) is False
    with pytest.raises(ValueError, match="makes him a minor, not an adult"):
        claimed_minor(False, sixteen, TODAY)
    with pytest.raises(ValueError, match="makes him an adult, not a minor"):
        claimed_minor(True, dt.date(1990, 1, 1), TODAY)
