"""Rating benchmark: Tallyflow's Polars engine against the same rating in DuckDB SQL and
against a bare Parquet scan + group-by sum (the floor), on the same files, in one run.

    python -m bench.rating                       # 20M events, 4M calls, 5,000 prefixes
    python -m bench.rating --events 2000000 --calls 400000 --repeat 1   # a quick look
    python -m bench.rating --phases --repeat 5   # where the Polars time goes

Each engine runs in its own subprocess so its peak memory (max RSS) is its own. The
Polars and DuckDB results must agree to the cent on every charge, and on the unbilled
usage of each reason (rows, events, quantity and days), or the run fails.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import polars as pl

OUT = Path(__file__).resolve().parent / "out"
PERIOD = "2026-10"
DATA_VERSION = 3  # in the data folder's name: a new version generates new files
ROUNDING_DECIMALS = 4

CATALOG = """
version: bench
metrics:
  voice: {name: Voice, unit: s, aggregation: sum, dimensions: [direction]}
  sms: {name: SMS, unit: message, aggregation: sum}
  data: {name: Mobile data, unit: GB, aggregation: sum}
  storage: {name: Storage, unit: GB, aggregation: max}
  api: {name: API requests, unit: event, aggregation: count}
decks:
  bench:
    file: bench-deck.csv
    currency: USD
    increments: "30/6"
    connect_fee: "0.0100"
    minimum_charge: "0.0200"
    rounding: per_call
    rounding_decimals: 4
    rounding_mode: half_up
plans:
  bench:
    name: Bench
    currency: USD
    rounding: half_up
    charges:
      - {id: platform, name: Platform, model: flat, amount: "49.00"}
      - {id: voice, name: Calls, model: call_deck, metric: voice, deck: bench}
      - {id: sms, name: SMS, model: package, metric: sms, block_size: "100",
         block_price: "0.75", free_blocks: 1}
      - id: data
        name: Data
        model: graduated
        metric: data
        free_units: {units: "5"}
        tiers:
          - {up_to: "50", unit_price: "0.10"}
          - {up_to: "500", unit_price: "0.08"}
          - {up_to: null, unit_price: "0.05"}
      - id: storage
        name: Storage
        model: volume
        metric: storage
        tiers:
          - {up_to: "100", unit_price: "0.25"}
          - {up_to: "1000", unit_price: "0.18"}
          - {up_to: null, unit_price: "0.12"}
      - {id: api, name: API, model: per_unit, metric: api, unit_price: "0.0004",
         free_units: {units: "100"}}
"""


# --------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------


def generate(folder: Path, events: int, calls: int, prefixes: int, accounts: int) -> None:
    """Parquet files of typed usage, a deck, a catalog and subscriptions (seeded)."""
    folder.mkdir(parents=True, exist_ok=True)
    codes = pl.int_range(0, prefixes, eager=True)
    # Country codes 1..999 and nested mobile prefixes below them: a realistic mix of depths.
    deck = (
        pl.DataFrame({"i": codes})
        .with_columns(
            pl.when(pl.col("i") < 600)
            .then((pl.col("i") + 200).cast(pl.String))
            .otherwise(
                (pl.col("i") % 600 + 200).cast(pl.String) + (pl.col("i") // 600).cast(pl.String)
            )
            .alias("prefix"),
        )
        .unique("prefix", keep="first")
        .sort("prefix")
    )
    deck = deck.with_columns(
        pl.format("Destination {}", pl.col("prefix")).alias("destination"),
        pl.lit("all").alias("band"),
        ((pl.col("i") * 7919 % 9000 + 100).cast(pl.Decimal(38, 6)) / 100000).alias(
            "rate_per_minute"
        ),
    ).select("prefix", "destination", "band", "rate_per_minute")
    deck.write_csv(folder / "bench-deck.csv")
    (folder / "catalog.yaml").write_text(CATALOG)
    subs = pl.DataFrame(
        {
            "subscription_id": [f"S{i:06d}" for i in range(accounts)],
            "account_id": [f"A{i:06d}" for i in range(accounts)],
            "plan_id": ["bench"] * accounts,
            "start_date": [date(2026, 1, 1)] * accounts,
            "end_date": [None] * accounts,
        },
        schema_overrides={"end_date": pl.Date},
    )
    subs.write_parquet(folder / "subscriptions.parquet")

    shares = {"voice": calls, "sms": (events - calls) // 2}
    rest = events - sum(shares.values())
    shares |= {"data": rest // 2, "storage": rest // 4}
    shares["api"] = events - sum(shares.values())
    prefix_list = deck["prefix"]
    files = 20
    written = 0
    for part in range(files):
        frames = []
        for metric, total in shares.items():
            n = total // files + (1 if part < total % files else 0)
            frames.append(_events(metric, n, part, accounts, prefix_list))
        frame = (
            pl.concat(frames)
            .with_row_index("n")
            .with_columns(pl.format("e{}-{}", pl.lit(part), pl.col("n")).alias("event_id"))
            .drop("n")
        )
        frame.write_parquet(folder / f"usage-{part:02d}.parquet")
        written += frame.height
    (folder / "meta.json").write_text(
        json.dumps(
            {"events": written, "calls": calls, "prefixes": deck.height, "accounts": accounts}
        )
    )


def orphan_accounts(accounts: int) -> int:
    """Accounts with usage and no subscription, beside the subscribed ones (1 in 1,000).
    They have 1 event in `ORPHAN_EVENT_EVERY`, all unbilled (`no_subscription`), as are
    the calls to a number no prefix covers (1 in `UNKNOWN_NUMBER_EVERY`): real usage has
    leakage, and every engine must find it."""
    return max(1, accounts // 1000)


ORPHAN_EVENT_EVERY = 1000
UNKNOWN_NUMBER_EVERY = 1000


def _events(metric: str, n: int, seed: int, accounts: int, prefixes: pl.Series) -> pl.DataFrame:
    base = pl.DataFrame({"k": pl.int_range(0, n, eager=True)})
    mix = (pl.col("k") * 2654435761 + seed * 97 + len(metric)) % 2**31
    quantity = {
        "voice": (mix % 3600).cast(pl.Decimal(38, 12)),
        "sms": pl.lit(Decimal(1)).cast(pl.Decimal(38, 12)),
        "data": ((mix % 2000 + 1).cast(pl.Decimal(38, 12)) / 1000),
        "storage": ((mix % 50000).cast(pl.Decimal(38, 12)) / 100),
        "api": pl.lit(Decimal(1)).cast(pl.Decimal(38, 12)),
    }[metric]
    pick = (mix // 7) % prefixes.len()
    digits = (mix % 10_000_000).cast(pl.String).str.pad_start(7, "0")
    return _with_destination(base, metric, mix, quantity, accounts, prefixes, pick, digits)


def _with_destination(
    base: pl.DataFrame,
    metric: str,
    mix: pl.Expr,
    quantity: pl.Expr,
    accounts: int,
    prefixes: pl.Series,
    pick: pl.Expr,
    digits: pl.Expr,
) -> pl.DataFrame:
    orphans = orphan_accounts(accounts)
    account = (
        pl.when(mix % ORPHAN_EVENT_EVERY == 1)
        .then(accounts + (mix // ORPHAN_EVENT_EVERY) % orphans)
        .otherwise((mix // 3) % accounts)
    )
    frame = base.with_columns(
        pl.format("A{}", account.cast(pl.String).str.pad_start(6, "0")).alias("account_id"),
        pl.lit(metric).alias("metric"),
        quantity.cast(pl.Decimal(38, 12)).alias("quantity"),
        pl.lit(
            {"voice": "s", "sms": "message", "data": "GB", "storage": "GB", "api": "event"}[metric]
        ).alias("unit"),
        (pl.lit(1_790_812_800_000_000, pl.Int64) + (mix % (31 * 86400)) * 1_000_000)
        .cast(pl.Datetime("us", "UTC"))
        .alias("timestamp"),
        pick.cast(pl.UInt32).alias("pick"),
        digits.alias("digits"),
        # by the row, not by `mix` (which picks the account): spread over the accounts
        (pl.col("k") % UNKNOWN_NUMBER_EVERY == 0).alias("unknown"),
        pl.lit("outbound" if metric in ("voice", "sms") else None, pl.String).alias("direction"),
    )
    if metric == "voice":
        lookup = pl.DataFrame(
            {
                "pick": pl.int_range(0, prefixes.len(), eager=True, dtype=pl.UInt32),
                "prefix": prefixes,
            }
        )
        frame = (
            frame.join(lookup, on="pick", how="left")
            .with_columns(
                # The deck's prefixes start with 2 to 7: a number starting with 1 has no rate.
                pl.when(pl.col("unknown"))
                .then(pl.lit("+1") + pl.col("digits"))
                .otherwise(pl.lit("+") + pl.col("prefix") + pl.col("digits"))
                .alias("destination")
            )
            .drop("prefix")
        )
    else:
        frame = frame.with_columns(pl.lit(None, pl.String).alias("destination"))
    return frame.select(
        "account_id", "metric", "quantity", "unit", "timestamp", "destination", "direction"
    )


# --------------------------------------------------------------------------------------
# Engines (each runs in a child process: `python -m bench.rating --engine NAME --data DIR`)
# --------------------------------------------------------------------------------------


def run_polars(folder: Path) -> dict[str, Any]:
    """Tallyflow's own engine, `pricing_rules.rating.rate`, streaming from the files."""
    from pricing_rules.catalog import load_catalog
    from pricing_rules.money import plain
    from pricing_rules.periods import BillingPeriod
    from pricing_rules.rating import rate

    catalog = load_catalog(folder / "catalog.yaml")
    usage = pl.scan_parquet(sorted(folder.glob("usage-*.parquet")))
    subs = pl.read_parquet(folder / "subscriptions.parquet")
    result = rate(usage, subs, catalog, BillingPeriod.parse(PERIOD))
    totals = result.lines.group_by("charge_id").agg(pl.col("amount_minor").sum())
    unrated = result.unrated.group_by("reason").agg(
        pl.len().alias("rows"),
        pl.col("events").sum(),
        pl.col("quantity").sum(),
        pl.col("first_day").min().cast(pl.String),
        pl.col("last_day").max().cast(pl.String),
    )
    return {
        "cents": dict(totals.iter_rows()),
        "unrated": {
            reason: [rows, events, plain(Decimal(str(quantity))), first, last]
            for reason, rows, events, quantity, first, last in unrated.iter_rows()
        },
        "events": result.events,
    }


# Tallyflow's work as SQL: usage attributed to subscriptions, what nobody pays for
# counted with its reason, quantity and days, and every event either rated or unrated.
# The bench's subscriptions all cover the period, so, as in Tallyflow, no account's
# usage (calls included) is split by day. A number is 1 to 15 digits after an optional
# "+", or it has no rate.
DUCKDB_SQL = """
WITH usage AS NOT MATERIALIZED (
  SELECT *, CAST(timestamp AS DATE) AS day FROM read_parquet($files)
),
agg AS MATERIALIZED (
  SELECT account_id, metric, sum(quantity) AS q_sum, max(quantity) AS q_max,
         count(*) AS n
  FROM usage GROUP BY ALL
),
owned AS (
  SELECT a.*, s.subscription_id FROM agg a LEFT JOIN subs s USING (account_id)
),
calls AS (
  SELECT u.account_id, s.subscription_id, u.day, u.quantity AS q,
         CAST(ceil(u.quantity) AS BIGINT) AS d,
         CASE WHEN regexp_full_match(u.destination, '\\+[0-9]{1,15}') THEN
                CAST(rpad(substr(u.destination, 2), 15, '0') AS BIGINT) * 16
                  + length(u.destination) - 1
              WHEN regexp_full_match(u.destination, '[0-9]{1,15}') THEN
                CAST(rpad(u.destination, 15, '0') AS BIGINT) * 16 + length(u.destination)
         END AS k
  FROM usage u JOIN subs s USING (account_id)
  WHERE u.metric = 'voice'
),
-- a call outside the range it falls after has no rate: unrated, never free
matched AS (
  SELECT c.account_id, c.subscription_id, c.day, c.q, c.d, r.rate_micro,
         CASE WHEN c.k <= r.range_end THEN r.prefix_row END AS prefix_row
  FROM calls c ASOF LEFT JOIN ranges r ON c.k >= r.range_start
),
-- per call in 1e-4 units: billed seconds per 30/6 increments, rate x s / 60 rounded
-- half up, + connect fee 100, topped up to the minimum 200; zero-second calls are free
timed AS (
  SELECT account_id, subscription_id, day, q, prefix_row, d, rate_micro,
         CASE WHEN d = 0 THEN 0 WHEN d <= 30 THEN 30
              ELSE 30 + CAST(ceil((d - 30) / 6.0) AS BIGINT) * 6 END AS billed
  FROM matched
),
priced AS (
  SELECT *,
         CASE WHEN d = 0 THEN 0 ELSE greatest(usage_e4 + 100, 200) END AS amount_e4
  FROM (SELECT *, (CAST(rate_micro AS HUGEINT) * billed + 3000) // 6000 AS usage_e4
        FROM timed)
),
voice AS ({voice}),
sms AS (
  SELECT greatest(CAST(ceil(q_sum / 100) AS BIGINT) - 1, 0) * 75 AS cents
  FROM owned WHERE metric = 'sms' AND subscription_id IS NOT NULL
),
data AS (
  SELECT
    round((least(greatest(q_sum - 5, 0), 50) * 0.10
      + greatest(least(greatest(q_sum - 5, 0), 500) - 50, 0) * 0.08
      + greatest(greatest(q_sum - 5, 0) - 500, 0) * 0.05) * 100, 0) AS cents
  FROM owned WHERE metric = 'data' AND subscription_id IS NOT NULL
),
storage AS (
  SELECT
    round(q_max * CASE WHEN q_max <= 100 THEN 0.25 WHEN q_max <= 1000 THEN 0.18
                       ELSE 0.12 END * 100, 0) AS cents
  FROM owned WHERE metric = 'storage' AND subscription_id IS NOT NULL
),
api AS (
  SELECT round(greatest(n - 100, 0) * 0.0004 * 100, 0) AS cents
  FROM owned WHERE metric = 'api' AND subscription_id IS NOT NULL
),
-- the days of usage nobody pays for: one more pass, over those accounts' usage only
orphans AS (
  SELECT u.account_id, u.metric, count(*) AS n,
         CASE u.metric WHEN 'storage' THEN max(u.quantity) WHEN 'api' THEN count(*)
                       ELSE sum(u.quantity) END AS q,
         min(u.day) AS first_day, max(u.day) AS last_day
  FROM usage u
  WHERE u.account_id IN (SELECT account_id FROM owned WHERE subscription_id IS NULL)
  GROUP BY u.account_id, u.metric
)
SELECT 'cents' AS kind, 'voice' AS name, CAST(sum(cents) AS BIGINT) AS value,
       NULL AS n, NULL AS q, NULL AS first_day, NULL AS last_day FROM voice
UNION ALL SELECT 'cents', 'sms', CAST(sum(cents) AS BIGINT), NULL, NULL, NULL, NULL FROM sms
UNION ALL SELECT 'cents', 'data', CAST(sum(cents) AS BIGINT), NULL, NULL, NULL, NULL
  FROM data
UNION ALL SELECT 'cents', 'storage', CAST(sum(cents) AS BIGINT), NULL, NULL, NULL, NULL
  FROM storage
UNION ALL SELECT 'cents', 'api', CAST(sum(cents) AS BIGINT), NULL, NULL, NULL, NULL FROM api
UNION ALL SELECT 'cents', 'platform', CAST(count(*) * 4900 AS BIGINT), NULL, NULL, NULL,
       NULL FROM subs
UNION ALL SELECT 'unrated', 'no_rate_for_destination', count(*), sum(unrated),
       sum(unrated_q), min(first_day), max(last_day)
  FROM voice WHERE unrated > 0
UNION ALL SELECT 'unrated', 'no_subscription', count(*), sum(n), sum(q), min(first_day),
       max(last_day)
  FROM orphans
UNION ALL SELECT 'events', 'read', sum(n), NULL, NULL, NULL, NULL FROM agg
UNION ALL SELECT 'events', 'rated', sum(n), NULL, NULL, NULL, NULL
  FROM owned WHERE subscription_id IS NOT NULL AND metric <> 'voice'
UNION ALL SELECT 'events', 'rated', sum(calls - unrated), NULL, NULL, NULL, NULL FROM voice
"""

# Call totals per subscription straight from the priced calls.
VOICE_FROM_CALLS = """
  SELECT subscription_id,
         (sum(amount_e4) FILTER (WHERE prefix_row IS NOT NULL) + 50) // 100 AS cents,
         count(*) AS calls, count(*) FILTER (WHERE prefix_row IS NULL) AS unrated,
         sum(q) FILTER (WHERE prefix_row IS NULL) AS unrated_q,
         min(day) FILTER (WHERE prefix_row IS NULL) AS first_day,
         max(day) FILTER (WHERE prefix_row IS NULL) AS last_day
  FROM priced GROUP BY ALL
"""

# Explanation rows like those of Tallyflow's call lines (which are per subscription,
# prefix and band; the bench deck has no bands): calls, billed seconds, increments,
# connect fees, minimum top-ups and amount per subscription and deck prefix, kept as a
# table the totals are then summed from.
DUCKDB_ROWS_SQL = (
    "CREATE TEMP TABLE explained AS "
    + DUCKDB_SQL.split("voice AS (")[0].rstrip().rstrip(",")
    + """
SELECT subscription_id, prefix_row, count(*) AS calls, sum(billed) AS billed_seconds,
       sum(CASE WHEN billed > 0 THEN 1 + (billed - 30) // 6 ELSE 0 END) AS increments,
       sum(CASE WHEN d > 0 THEN 100 ELSE 0 END) AS connect_e4,
       sum(CASE WHEN d > 0 THEN greatest(200 - usage_e4 - 100, 0) ELSE 0 END) AS topup_e4,
       sum(amount_e4) AS amount_e4, sum(q) AS q, min(day) AS first_day,
       max(day) AS last_day
FROM priced GROUP BY ALL
"""
)

VOICE_FROM_ROWS = """
  SELECT subscription_id,
         (sum(amount_e4) FILTER (WHERE prefix_row IS NOT NULL) + 50) // 100 AS cents,
         sum(calls) AS calls, coalesce(sum(calls) FILTER (WHERE prefix_row IS NULL), 0)
           AS unrated,
         sum(q) FILTER (WHERE prefix_row IS NULL) AS unrated_q,
         min(first_day) FILTER (WHERE prefix_row IS NULL) AS first_day,
         max(last_day) FILTER (WHERE prefix_row IS NULL) AS last_day
  FROM explained GROUP BY ALL
"""


def run_duckdb(folder: Path) -> dict[str, Any]:
    """The same rating as SQL: DECIMAL aggregates, ASOF JOIN prefix match, integer money;
    call totals straight from the priced calls."""
    return _duckdb(folder, explained=False)


def run_duckdb_rows(folder: Path) -> dict[str, Any]:
    """As `run_duckdb`, but the calls are first summed into explanation rows per
    subscription and prefix, and the totals come from those."""
    return _duckdb(folder, explained=True)


def _duckdb(folder: Path, *, explained: bool) -> dict[str, Any]:
    import duckdb

    from pricing_rules.catalog import load_catalog
    from pricing_rules.money import plain

    deck = load_catalog(folder / "catalog.yaml").rate_deck("bench")
    ranges = deck._prefix_ranges.select(  # the same disjoint prefix ranges Polars joins
        pl.col("__deck_range_start").alias("range_start"),
        pl.col("__deck_range_end").alias("range_end"),
        (pl.col("__deck_rate_all") * 1_000_000).cast(pl.Int64).alias("rate_micro"),
        pl.col("__deck_prefix_row").alias("prefix_row"),
    ).sort("range_start")
    con = duckdb.connect()
    con.execute(f"SET threads TO {os.cpu_count() or 2}")
    con.execute("SET TimeZone = 'UTC'")
    con.register("ranges", ranges.to_arrow())
    con.execute(
        "CREATE TABLE subs AS SELECT * FROM read_parquet(?)",
        [str(folder / "subscriptions.parquet")],
    )
    period_start, period_end = date(2026, 10, 1), date(2026, 11, 1)
    covering = con.execute(
        "SELECT count(*) FROM subs WHERE start_date > ? OR end_date < ?",
        [period_start, period_end],
    ).fetchone()
    if covering != (0,):
        raise RuntimeError("the SQL form expects subscriptions that cover the whole period")
    files = [str(p) for p in sorted(folder.glob("usage-*.parquet"))]
    if explained:
        con.execute(DUCKDB_ROWS_SQL, {"files": files})
    sql = DUCKDB_SQL.replace("{voice}", VOICE_FROM_ROWS if explained else VOICE_FROM_CALLS)
    rows = con.execute(sql, {"files": files}).fetchall()
    cents = {str(name): int(value) for kind, name, value, *_ in rows if kind == "cents"}
    unrated: dict[str, list[Any]] = {
        str(name): [int(value), int(n), plain(Decimal(str(quantity))), str(first), str(last)]
        for kind, name, value, n, quantity, first, last in rows
        if kind == "unrated" and value
    }
    read = sum(int(value) for kind, name, value, *_ in rows if (kind, name) == ("events", "read"))
    rated = sum(int(value) for kind, name, value, *_ in rows if (kind, name) == ("events", "rated"))
    unbilled = sum(int(counts[1]) for counts in unrated.values())
    if rated + unbilled != read:
        raise RuntimeError(f"SQL rating lost events: {read} in, {rated} rated + {unbilled}")
    return {"cents": cents, "unrated": unrated, "events": read}


def run_floor(folder: Path) -> dict[str, int]:
    """The floor: read the same files and sum quantities per account and metric."""
    frame = (
        pl.scan_parquet(sorted(folder.glob("usage-*.parquet")))
        .group_by("account_id", "metric")
        .agg(pl.col("quantity").sum())
        .collect(engine="streaming")
    )
    return {"groups": frame.height}


def run_inputs(folder: Path) -> dict[str, int]:
    """The floor, reading what any rating of these files must read: each event's timestamp
    (to keep the period's window), unit (to convert), direction (a dimension of voice) and
    destination (to find a call's prefix). Each column is used, so none is skipped; nothing
    is priced: it is what reading those inputs costs in this engine, before any pricing."""
    window = (  # `PERIOD`, widened by 2 days each side as `rate` reads it
        datetime(2026, 9, 29, tzinfo=UTC),
        datetime(2026, 11, 3, tzinfo=UTC),
    )
    frame = (
        pl.scan_parquet(sorted(folder.glob("usage-*.parquet")))
        .filter(pl.col("timestamp").is_between(*window))
        .group_by("account_id", "metric")
        .agg(
            pl.col("quantity").sum(),
            pl.col("unit").first(),
            pl.col("direction").first(),
            pl.col("destination").str.len_bytes().sum(),
        )
        .collect(engine="streaming")
    )
    return {"groups": frame.height}


def phases(folder: Path, repeat: int) -> dict[str, float]:
    """Where Tallyflow's time goes, in this one process: the floor, the floor reading every
    column rating needs (`run_inputs`), the partial aggregates alone, the calls alone (read,
    priced one by one and summed into explanation rows) and the whole rating. Median seconds
    of `repeat` runs of each, interleaved."""
    from datetime import timedelta

    from pricing_rules.catalog import load_catalog
    from pricing_rules.event_rating import rate_event_charges
    from pricing_rules.localtime import with_local_day
    from pricing_rules.periods import BillingPeriod
    from pricing_rules.rating import active_subscriptions, attribute, partial_usage, rate

    catalog = load_catalog(folder / "catalog.yaml")
    files = sorted(folder.glob("usage-*.parquet"))
    rows = pl.read_parquet(folder / "subscriptions.parquet")
    period = BillingPeriod.parse(PERIOD)
    subs = active_subscriptions(rows, period)
    # as `rate` reads the usage: no account is split by day, as every subscription covers
    # the period (the SQL relies on the same)
    window = period.start_at - timedelta(days=2), period.end_at + timedelta(days=2)
    usage = with_local_day(pl.scan_parquet(files), {}, *window)
    covered, _ = attribute(partial_usage(usage, catalog, [], spans=False).collect(), subs)
    known = covered.filter(pl.col("plan_id").is_in(list(catalog.plans)))
    steps: dict[str, Callable[[], object]] = {
        "floor": lambda: run_floor(folder),
        "inputs read": lambda: run_inputs(folder),
        "partial aggregates": lambda: partial_usage(usage, catalog, [], spans=False).collect(
            engine="streaming"
        ),
        "calls": lambda: rate_event_charges(usage, subs, known, catalog, {}, []),
        "whole rating": lambda: rate(pl.scan_parquet(files), rows, catalog, period),
    }
    seconds: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(repeat):
        for name, step in steps.items():
            started = time.perf_counter()
            step()
            seconds[name].append(time.perf_counter() - started)
    return {name: statistics.median(times) for name, times in seconds.items()}


ENGINES = {
    "polars": run_polars,
    "duckdb": run_duckdb,
    "duckdb+rows": run_duckdb_rows,
    "floor": run_floor,
}


# What each engine imports, loaded before its clock starts: the timings are of rating, not
# of loading Python modules (Tallyflow's catalog alone brings pydantic and YAML).
IMPORTS = {
    "polars": ("pricing_rules.catalog", "pricing_rules.periods", "pricing_rules.rating"),
    "duckdb": ("duckdb", "pricing_rules.catalog"),
    "duckdb+rows": ("duckdb", "pricing_rules.catalog"),
    "floor": (),
}


def child(engine: str, folder: Path) -> None:
    for module in IMPORTS[engine]:
        importlib.import_module(module)
    started = time.perf_counter()
    result = ENGINES[engine](folder)
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"engine": engine, "seconds": seconds, "peak_mb": peak, "result": result}))


def measure(engine: str, folder: Path) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "bench.rating", "--engine", engine, "--data", str(folder)],
        check=True,
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=20_000_000)
    parser.add_argument("--calls", type=int, default=4_000_000)
    parser.add_argument("--prefixes", type=int, default=5_000)
    parser.add_argument("--accounts", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--engine", choices=sorted(ENGINES))
    parser.add_argument("--data", type=Path)
    parser.add_argument(
        "--phases",
        action="store_true",
        help="time the floor, the inputs read, the partial aggregates, the calls and the "
        "whole rating in one process, instead of the engines",
    )
    args = parser.parse_args()
    if args.engine:
        child(args.engine, args.data)
        return
    folder = OUT / (
        f"data-v{DATA_VERSION}-{args.events}-{args.calls}-{args.prefixes}-{args.accounts}"
    )
    if not (folder / "meta.json").exists():
        print(f"generating {args.events:,} events into {folder} ...", flush=True)
        generate(folder, args.events, args.calls, args.prefixes, args.accounts)
    (folder / "catalog.yaml").write_text(CATALOG)  # the prices may change; the data not
    if args.phases:
        timed = phases(folder, args.repeat)
        print(f"median of {args.repeat}, in one process")
        for name, value in timed.items():
            print(f"{name:<20} {value:>6.2f} s  {value / timed['floor']:>5.2f} x floor")
        return
    meta = json.loads((folder / "meta.json").read_text())
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in ENGINES}
    for attempt in range(args.repeat):
        for name in ENGINES:  # interleaved, so drift hits every engine alike
            runs[name].append(measure(name, folder))
            print(f"  run {attempt + 1} {name}: {runs[name][-1]['seconds']:.2f} s", flush=True)
    polars_totals = runs["polars"][0]["result"]
    if not polars_totals["unrated"]:
        raise SystemExit("the bench data has no unbilled usage: every engine must find some")
    for name in ("duckdb", "duckdb+rows"):
        if runs[name][0]["result"] != polars_totals:
            raise SystemExit(
                f"engines disagree:\n polars {polars_totals}\n {name} {runs[name][0]['result']}"
            )
    median = {name: statistics.median(r["seconds"] for r in rs) for name, rs in runs.items()}
    peak = {name: max(r["peak_mb"] for r in rs) for name, rs in runs.items()}
    report = {
        "data": meta,
        "median_seconds": median,
        "peak_rss_mb": peak,
        "polars_over_duckdb": median["polars"] / median["duckdb"],
        "polars_over_duckdb_rows": median["polars"] / median["duckdb+rows"],
        "polars_over_floor": median["polars"] / median["floor"],
        "results": polars_totals,
        "cpus": os.cpu_count(),
    }
    (OUT / "results.json").write_text(json.dumps(report, indent=2))
    print(
        f"\n{meta['events']:,} events ({meta['calls']:,} calls, {meta['prefixes']:,} prefixes, "
        f"{meta['accounts']:,} accounts); median of {args.repeat}"
    )
    print(f"{'engine':<12} {'seconds':>8} {'peak MB':>8}")
    for name in ENGINES:
        print(f"{name:<12} {median[name]:>8.2f} {peak[name]:>8.0f}")
    print(
        f"polars / duckdb = {report['polars_over_duckdb']:.2f}; "
        f"polars / duckdb+rows = {report['polars_over_duckdb_rows']:.2f}; "
        f"polars / floor = {report['polars_over_floor']:.2f}; totals and unbilled usage agree"
    )


if __name__ == "__main__":
    main()
