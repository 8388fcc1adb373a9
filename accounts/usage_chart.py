"""The 30-day daily-usage chart of the account page, drawn on the server as SVG geometry:
no chart library, no script, readable without CSS."""

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, tzinfo

DAYS = 30
WIDTH = 300
HEIGHT = 100
BAR_STEP = WIDTH / DAYS
BAR_WIDTH = BAR_STEP * 0.7


@dataclass(frozen=True)
class Bar:
    day: date
    bytes: int
    x: float
    y: float
    height: float


@dataclass(frozen=True)
class DailyUsageChart:
    bars: list[Bar]
    peak_bytes: int
    total_bytes: int
    width: int = WIDTH
    height: int = HEIGHT
    bar_width: float = BAR_WIDTH


def chart_window(*, now: datetime, zone: tzinfo) -> tuple[list[date], datetime]:
    """The last DAYS calendar days in `zone` (today included) and the instant the first began."""
    today = now.astimezone(zone).date()
    days = [today - timedelta(days=offset) for offset in range(DAYS - 1, -1, -1)]
    return days, datetime.combine(days[0], time.min, tzinfo=zone)


def build_chart(*, days: list[date], usage: dict[date, int]) -> DailyUsageChart:
    peak = max((usage.get(day, 0) for day in days), default=0)
    bars = []
    for index, day in enumerate(days):
        used = usage.get(day, 0)
        # A day with any use gets at least a 1-unit bar, so it is visibly not zero.
        height = max(HEIGHT * used / peak, 1) if used else 0
        bars.append(
            Bar(day=day, bytes=used, x=round(index * BAR_STEP, 2), y=round(HEIGHT - height, 2), height=round(height, 2))
        )
    return DailyUsageChart(bars=bars, peak_bytes=peak, total_bytes=sum(bar.bytes for bar in bars))
