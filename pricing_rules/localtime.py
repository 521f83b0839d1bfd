"""Local dates of UTC instants, per account, as plain Polars expressions.

A zone's UTC offset changes at most a couple of times in a billing month, so each
account gets its zone's offsets over a window (the offset at its start, then each change)
and an event's local date is `(instant + offset).date()`: one join with a row per
account, no per-zone pass over the events.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import polars as pl

_STEP = timedelta(hours=1)


def offset_changes(zone: str, start: datetime, end: datetime) -> list[tuple[datetime, int]]:
    """The UTC offset of `zone` in seconds at `start`, then each change before `end`.

    >>> from datetime import UTC
    >>> [(f"{t:%m-%d %H:%M}", s // 3600) for t, s in offset_changes(
    ...     "Europe/Berlin", datetime(2026, 10, 20, tzinfo=UTC), datetime(2026, 11, 1, tzinfo=UTC))]
    [('10-20 00:00', 2), ('10-25 01:00', 1)]
    """
    tz = ZoneInfo(zone)

    def offset(instant: datetime) -> int:
        delta = instant.astimezone(tz).utcoffset()
        return int(delta.total_seconds()) if delta is not None else 0

    changes = [(start, offset(start))]
    at = start
    while at < end:
        step = min(at + _STEP, end)
        if offset(step) != changes[-1][1]:
            low, high = at, step  # the change is in (low, high]: find its second
            while high - low > timedelta(seconds=1):
                middle = low + (high - low) // 2
                low, high = (middle, high) if offset(middle) == changes[-1][1] else (low, middle)
            changes.append((high, offset(high)))
        at = step
    return changes


def with_local_day(
    usage: pl.LazyFrame, zones: Mapping[str, str], start: datetime, end: datetime
) -> pl.LazyFrame:
    """Add `local_day`: each event's date in its account's time zone (UTC for an account
    not in `zones`), exact for instants in `[start, end)`.

    >>> from datetime import UTC
    >>> usage = pl.LazyFrame({"account_id": ["A", "B"],
    ...     "timestamp": [datetime(2026, 10, 31, 23, 30, tzinfo=UTC)] * 2})
    >>> window = datetime(2026, 10, 1, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC)
    >>> with_local_day(usage, {"A": "Europe/Berlin"}, *window).collect()["local_day"].to_list()
    [datetime.date(2026, 11, 1), datetime.date(2026, 10, 31)]
    """
    utc_day = pl.col("timestamp").dt.date()
    local = {a: z for a, z in zones.items() if z and z != "UTC"}
    if not local:
        return usage.with_columns(utc_day.alias("local_day"))
    schedules = {zone: offset_changes(zone, start, end) for zone in set(local.values())}
    most = max(len(s) for s in schedules.values())
    columns: dict[str, list[object]] = {"account_id": list(local)}
    for i in range(most):
        columns[f"_at{i}"] = [_nth(schedules[z], i, 0) for z in local.values()]
        columns[f"_off{i}"] = [_nth(schedules[z], i, 1) for z in local.values()]
    instant = pl.Datetime("us", "UTC")
    table = pl.DataFrame(
        columns,
        schema={
            "account_id": pl.String,
            **{f"_at{i}": instant for i in range(most)},
            **{f"_off{i}": pl.Int64 for i in range(most)},
        },
    )
    offset: pl.Expr = pl.col("_off0")
    for i in range(1, most):
        changed = pl.col(f"_at{i}").is_not_null() & (pl.col("timestamp") >= pl.col(f"_at{i}"))
        offset = pl.when(changed).then(pl.col(f"_off{i}")).otherwise(offset)
    shifted = pl.col("timestamp") + pl.duration(seconds=offset.fill_null(0))
    return (
        usage.join(table.lazy(), on="account_id", how="left", maintain_order="left")
        .with_columns(shifted.dt.date().alias("local_day"))
        .drop(table.columns[1:])
    )


def _nth(schedule: list[tuple[datetime, int]], index: int, field: int) -> object:
    return schedule[index][field] if index < len(schedule) else None
