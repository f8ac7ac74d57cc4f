"""Age at the edge: whether a person is a minor, from his date of birth, and until when.

The registry never learns a date of birth: an adapter sends the month after a minor's 18th
birthday (`minor_until`), and the ZSM client library turns a date of birth it is given into
the age it claims for the suspect."""

from __future__ import annotations

import datetime as dt

ADULT_AGE = 18


def eighteenth_birthday(birth_date: dt.date) -> dt.date:
    """The day he turns 18; born on 29 February, on 1 March in a year without one."""
    try:
        return birth_date.replace(year=birth_date.year + ADULT_AGE)
    except ValueError:
        return dt.date(birth_date.year + ADULT_AGE, 3, 1)


def is_minor(birth_date: dt.date, today: dt.date) -> bool:
    return today < eighteenth_birthday(birth_date)


def minor_until(birth_date: dt.date | None, today: dt.date) -> dt.date | None:
    """The first day of the month after his 18th birthday while he is a minor, else None:
    month-precise, so that it tells no date of birth, and never early."""
    if birth_date is None or not is_minor(birth_date, today):
        return None
    day = eighteenth_birthday(birth_date)
    return dt.date(day.year + day.month // 12, day.month % 12 + 1, 1)


def claimed_minor(said: bool | None, birth_date: dt.date | None, today: dt.date) -> bool | None:
    """Whether the suspect is a minor, as a desk sends it: what it said (--minor or --adult),
    or what his date of birth makes him; None when neither is known. A claim that his date of
    birth contradicts is refused (ValueError), never sent."""
    if birth_date is None:
        return said
    minor = is_minor(birth_date, today)
    if said is not None and said != minor:
        raise ValueError(
            f"the date of birth makes him {'a minor' if minor else 'an adult'}, "
            f"not {'a minor' if said else 'an adult'}"
        )
    return minor
