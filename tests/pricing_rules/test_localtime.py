"""pricing_rules.localtime: local dates by offset schedules agree with zoneinfo."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from pricing_rules.localtime import offset_changes, with_local_day

START = datetime(2026, 3, 1, tzinfo=UTC)  # March and April: most northern DST changes
END = datetime(2026, 5, 1, tzinfo=UTC)
ZONES = [
    "Europe/Berlin",
    "America/Los_Angeles",
    "America/Santiago",  # DST ends in April, at midnight local
    "Australia/Lord_Howe",  # a 30-minute DST shift
    "Asia/Kathmandu",  # UTC+5:45
    "Pacific/Kiritimati",  # UTC+14
    "Pacific/Pago_Pago",  # UTC-11
    "UTC",
]


def test_offset_changes_find_each_change_to_the_second() -> None:
    # Los Angeles springs forward on 2026-03-08 at 02:00 PST = 10:00 UTC.
    changes = offset_changes("America/Los_Angeles", START, END)
    assert changes == [(START, -8 * 3600), (datetime(2026, 3, 8, 10, tzinfo=UTC), -7 * 3600)]
    assert offset_changes("Asia/Kathmandu", START, END) == [(START, 5 * 3600 + 45 * 60)]


@settings(max_examples=50, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(ZONES), st.integers(0, int((END - START).total_seconds()) - 1)),
        min_size=1,
        max_size=50,
    )
)
def test_local_days_agree_with_zoneinfo(events: list[tuple[str, int]]) -> None:
    accounts = {f"A{i}": zone for i, (zone, _) in enumerate(events)}
    instants = [START + timedelta(seconds=s) for _, s in events]
    usage = pl.LazyFrame(
        {"account_id": list(accounts), "timestamp": instants},
        schema={"account_id": pl.String, "timestamp": pl.Datetime("us", "UTC")},
    )
    got = with_local_day(usage, accounts, START, END).collect()["local_day"].to_list()
    zones = accounts.values()
    assert got == [t.astimezone(ZoneInfo(z)).date() for t, z in zip(instants, zones, strict=True)]
