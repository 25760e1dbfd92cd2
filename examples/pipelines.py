"""Example pipelines: what `make run` launches and the tests drive.

- hello: one step, the smallest possible job.
- orders: a fan-out and fan-in over a small order book, with a config model.
- broken: a step that raises, so the run fails and shows the error.
- chatty: a step that logs through its context and prints to stdout and stderr.
- daily_sales: partitioned by day (Europe/Berlin); each run sums one day's sales, and the
  schedule `nightly_sales` runs the day that just ended.
"""

from __future__ import annotations

import pathlib
import statistics
import sys

import pydantic

from vigil import (
    Definitions,
    RetryPolicy,
    RunRequest,
    ScheduleContext,
    SensorContext,
    SkipReason,
    StepContext,
    daily_partitions,
    job,
    schedule,
    sensor,
    step,
)


@step
def greet() -> str:
    return "hello from vigil"


class OrdersConfig(pydantic.BaseModel):
    orders: int = pydantic.Field(default=120, ge=1)
    seed: int = 7


@step
def load_orders(config: OrdersConfig) -> list[dict[str, float]]:
    # A deterministic pseudo-random order book; a real job would read a table.
    state = config.seed
    book = []
    for i in range(config.orders):
        state = (state * 1103515245 + 12345) % 2**31
        book.append({"id": float(i), "amount": round(5 + (state % 20000) / 100, 2)})
    return book


@step
def revenue(load_orders: list[dict[str, float]]) -> float:
    return round(sum(o["amount"] for o in load_orders), 2)


@step
def typical_order(load_orders: list[dict[str, float]]) -> float:
    return statistics.median(o["amount"] for o in load_orders)


@step(retry=RetryPolicy(max_retries=2, delay=0.1, backoff=2.0))
def large_orders(load_orders: list[dict[str, float]]) -> int:
    return sum(1 for o in load_orders if o["amount"] > 150)


@step
def summary(context: StepContext, revenue: float, typical_order: float, large_orders: int) -> str:
    line = f"revenue {revenue:.2f}, median order {typical_order:.2f}, {large_orders} large orders"
    context.log.info(line, revenue=revenue)
    print(line)
    return line


@step
def fetch_rates() -> dict[str, float]:
    return {"EUR": 1.0, "USD": 1.08}


@step
def convert(fetch_rates: dict[str, float]) -> float:
    raise ValueError(f"no rate for currency 'GBP' (known: {', '.join(sorted(fetch_rates))})")


@step
def talk(context: StepContext) -> int:
    for i in range(5):
        context.log.info(f"processing batch {i}", batch=i)
    print("written to stdout")
    print("written to stderr", file=sys.stderr)
    context.log.warning("batch 4 was small")
    return 5


orders = job(
    "orders",
    [load_orders, revenue, typical_order, large_orders, summary],
    description="Fan out over an order book and fan back in to a summary.",
)


@schedule(cron="0 2 * * *", job=orders, timezone="Europe/Berlin")
def nightly_orders(context: ScheduleContext) -> RunRequest:
    """The orders job every night, with the day of the year as its seed."""
    day = context.scheduled_time.timetuple().tm_yday
    return RunRequest(run_config={"steps": {"load_orders": {"seed": day}}})


@sensor(job=orders, minimum_interval=30)
def inbox(context: SensorContext) -> list[RunRequest] | SkipReason:
    """One orders run for each new file in ./inbox (file names sort in arrival order)."""
    folder = pathlib.Path("inbox")
    seen = context.cursor or ""
    new = sorted(p.name for p in folder.glob("*") if p.name > seen) if folder.is_dir() else []
    if not new:
        return SkipReason("no new file in ./inbox")
    context.update_cursor(new[-1])
    return [RunRequest(run_key=name, tags={"file": name}) for name in new]


@step
def day_of_sales(context: StepContext) -> dict[str, str]:
    # A real job would read the rows whose time falls in the partition's window.
    day, window = context.partition_key, context.partition_window
    if day is None or window is None:
        raise ValueError("daily_sales runs one day: launch it with --partition YYYY-MM-DD")
    start, end = window
    context.log.info(f"sales of {day}", start=start.isoformat())
    return {"day": day, "from": start.isoformat(), "to": end.isoformat()}


daily_sales = job(
    "daily_sales",
    [day_of_sales],
    description="One run per day of sales, from 2026-01-01 (Europe/Berlin days).",
    partitions=daily_partitions("2026-01-01", timezone="Europe/Berlin"),
)


@schedule(cron="30 0 * * *", job=daily_sales, timezone="Europe/Berlin")
def nightly_sales() -> None:
    """Every night at 00:30, the day that just ended (the last complete partition)."""


defs = Definitions(
    jobs=[
        job("hello", [greet], description="One step that says hello."),
        orders,
        job("broken", [fetch_rates, convert], description="A run that fails in its second step."),
        job("chatty", [talk], description="A step that logs and prints."),
        daily_sales,
    ],
    schedules=[nightly_orders, nightly_sales],
    sensors=[inbox],
)
