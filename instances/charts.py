"""A socket's power over a time range as SVG geometry: readings, power periods shaded, instance starts/stops marked.

Rendered server-side (no JavaScript, nothing from the internet). Samples are folded into
one bucket per horizontal pixel while they stream, so any range costs flat memory.
"""
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.utils import timezone

from sockets.models import Resolution, Socket
from sockets.admin import wh_text
from sockets.selectors import meter_points, meter_span, power_period_list

from .selectors import instance_list_between

WIDTH, HEIGHT = 960, 320
LEFT, RIGHT, TOP, BOTTOM = 56, 28, 12, 36
MAX_MARKERS = 400  # beyond this the marks blur into a bar; the list pages hold the details
PRESETS = {"1h": timedelta(hours=1), "6h": timedelta(hours=6), "24h": timedelta(hours=24), "7d": timedelta(days=7)}


@dataclass
class Mark:
    x: float
    title: str
    kind: str = ""
    width: float = 0


@dataclass
class Tick:
    pos: float
    label: str


@dataclass
class PowerChart:
    socket: Socket
    since: datetime
    until: datetime
    width: int = WIDTH
    height: int = HEIGHT
    left: int = LEFT
    top: int = TOP
    plot_width: int = WIDTH - LEFT - RIGHT
    plot_height: int = HEIGHT - TOP - BOTTOM
    max_w: float = 0
    sample_count: int = 0
    lines: list[str] = field(default_factory=list)  # SVG polyline point lists (mean power), broken at gaps
    band: list[str] = field(default_factory=list)  # min–max polygons per line
    periods: list[Mark] = field(default_factory=list)
    markers: list[Mark] = field(default_factory=list)
    markers_truncated: bool = False
    x_ticks: list[Tick] = field(default_factory=list)
    y_ticks: list[Tick] = field(default_factory=list)
    energy_kwh: float = 0.0  # what the meter counted over the range (a counter reset counted from zero)
    runs: list[dict] = field(default_factory=list)  # the instances of the range, for the table under the chart

    @property
    def bottom(self) -> int:
        return self.top + self.plot_height

    @property
    def right(self) -> int:
        return self.left + self.plot_width


def default_range(*, socket: Socket) -> tuple[datetime, datetime]:
    """The span that has readings, raw or rolled up (at least an hour, at most 7 days) up to the latest one, or the last hour."""
    span_of_readings = meter_span(socket=socket)
    if span_of_readings is None:
        return timezone.now() - timedelta(hours=1), timezone.now()
    earliest, latest = span_of_readings
    earliest = max(earliest, latest - PRESETS["7d"])
    span = max(latest - earliest, PRESETS["1h"])
    until = latest + span / 50  # a little room after the last reading
    return until - span - span / 50, until


def preset_range(*, socket: Socket, preset: str) -> tuple[datetime, datetime] | None:
    """The last 1 h / 6 h / 24 h / 7 d up to now (None for an unknown preset)."""
    span = PRESETS.get(preset)
    if span is None:
        return None
    until = timezone.now()
    return until - span, until


def power_chart(*, socket: Socket, since: datetime, until: datetime) -> PowerChart:
    """Build the chart of `socket` between `since` and `until`."""
    chart = PowerChart(socket=socket, since=since, until=until)
    buckets = _sample_buckets(chart)
    chart.max_w = _nice_ceiling(max((b[1] for b in buckets.values()), default=0))
    _draw_power(chart, buckets)
    _draw_periods(chart)
    _draw_instances(chart)
    chart.x_ticks = _time_ticks(chart)
    chart.y_ticks = [Tick(pos=_y(chart, chart.max_w * i / 4), label=f"{chart.max_w * i / 4:g}") for i in range(5)]
    return chart


def _x(chart: PowerChart, at: datetime) -> float:
    span = (chart.until - chart.since).total_seconds() or 1
    fraction = min(max((at - chart.since).total_seconds() / span, 0), 1)
    return round(chart.left + fraction * chart.plot_width, 1)


def _y(chart: PowerChart, watts: float) -> float:
    return round(chart.bottom - (watts / chart.max_w if chart.max_w else 0) * chart.plot_height, 1)


def _sample_buckets(chart: PowerChart) -> dict[int, list[float]]:
    """Pixel column -> [min W, max W, sum W, count], folded while the readings stream: raw samples, and the
    rollups where the retention has removed them (hourly ones beyond a week's range)."""
    buckets: dict[int, list[float]] = {}
    resolution = Resolution.HOUR if chart.until - chart.since > PRESETS["7d"] else Resolution.MINUTE
    for point in meter_points(socket=chart.socket, since=chart.since, until=chart.until, resolution=resolution):
        chart.sample_count += point.samples
        chart.energy_kwh += point.energy_wh / 1000
        column = int(_x(chart, point.at) - chart.left)
        bucket = buckets.get(column)
        if bucket is None:
            buckets[column] = [point.min_w, point.max_w, point.mean_w * point.samples, point.samples]
        else:
            bucket[0], bucket[1] = min(bucket[0], point.min_w), max(bucket[1], point.max_w)
            bucket[2], bucket[3] = bucket[2] + point.mean_w * point.samples, bucket[3] + point.samples
    return buckets


def _draw_power(chart: PowerChart, buckets: dict[int, list[float]]) -> None:
    """Mean power as lines, min–max as a band; a line breaks where readings stop for a while."""
    gap = max(chart.plot_width // 40, 3)
    runs: list[list[int]] = []
    for column in sorted(buckets):
        if runs and column - runs[-1][-1] <= gap:
            runs[-1].append(column)
        else:
            runs.append([column])
    for run in runs:
        xs = [chart.left + c for c in run]
        chart.lines.append(" ".join(f"{x},{_y(chart, buckets[c][2] / buckets[c][3])}" for x, c in zip(xs, run)))
        top = [f"{x},{_y(chart, buckets[c][1])}" for x, c in zip(xs, run)]
        bottom = [f"{x},{_y(chart, buckets[c][0])}" for x, c in zip(reversed(xs), reversed(run))]
        chart.band.append(" ".join(top + bottom))


def _draw_periods(chart: PowerChart) -> None:
    for period in power_period_list(socket=chart.socket, since=chart.since, until=chart.until).iterator():
        x0, x1 = _x(chart, period.power_on_at), _x(chart, period.power_off_at or min(timezone.now(), chart.until))
        off = (
            f"OFF {_local(period.power_off_at)} by {period.power_off_by} ({period.power_off_cause})"
            if period.power_off_at else "still ON"
        )
        title = f"ON {_local(period.power_on_at)} by {period.power_on_by} ({period.power_on_cause}) → {off}"
        chart.periods.append(Mark(x=x0, width=max(x1 - x0, 1), title=title))


def _draw_instances(chart: PowerChart) -> None:
    instances = instance_list_between(socket=chart.socket, since=chart.since, until=chart.until)
    for instance in instances.iterator(chunk_size=500):
        if len(chart.markers) >= MAX_MARKERS:
            chart.markers_truncated = True
            return
        label = f"{instance.pk}" + (f" ({instance.client_label})" if instance.client_label else "")
        chart.runs.append({"instance": instance, "label": instance.client_label or instance.pk, "wh": wh_text(instance.energy_consumed_wh)})
        if instance.started_at >= chart.since:
            chart.markers.append(Mark(x=_x(chart, instance.started_at), kind="start", title=f"{label} started {_local(instance.started_at)}"))
        if instance.stopped_at and instance.stopped_at <= chart.until:
            energy = f", {wh_text(instance.energy_consumed_wh)} Wh" if instance.energy_consumed_wh is not None else ""
            title = f"{label} stopped {_local(instance.stopped_at)}: {instance.stop_reason}{energy}"
            chart.markers.append(Mark(x=_x(chart, instance.stopped_at), kind="stop", title=title))


def _time_ticks(chart: PowerChart, count: int = 6) -> list[Tick]:
    span = chart.until - chart.since
    fmt = "%H:%M" if span <= timedelta(days=1) else "%m-%d %H:%M"
    return [
        Tick(pos=_x(chart, at), label=timezone.localtime(at).strftime(fmt))
        for at in (chart.since + span * i / count for i in range(count + 1))
    ]


def _nice_ceiling(watts: float) -> float:
    """The next of 1, 2, 5 × 10^n at or above `watts` (10 W at least)."""
    step = 1.0
    while True:
        for factor in (1, 2, 5):
            if step * factor >= max(watts, 10):
                return step * factor
        step *= 10


def _local(at: datetime) -> str:
    return timezone.localtime(at).strftime("%Y-%m-%d %H:%M:%S")
