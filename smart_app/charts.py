"""The IgG timeline's geometry (pure): the report's ``igg_history`` -> coordinates the
report template draws as an SVG (server-rendered: no script, no style attributes, so it
passes the page's CSP; colours and shapes come from app.css classes).

Pre-treatment, on-treatment and unknown-timing results differ in shape as well as colour,
so the chart does not rely on colour alone; the template also gives every point a link to
its Observation and an accessible name, and a data table carries the same values.
"""

from __future__ import annotations

import math
from datetime import date, timedelta
from typing import Any

WIDTH, HEIGHT = 720, 300
LEFT, RIGHT, TOP, BOTTOM = 64, 24, 44, 40  # plot margins (room for axis labels and markers)
TIMING_LABEL = {
    "pre-treatment": "before the first dose",
    "on-treatment": "on treatment",
    "unknown": "timing unknown",
}


def _nice_step(span: float, ticks: int = 5) -> float:
    raw = span / ticks
    magnitude = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 2.5, 5, 10):
        if raw <= m * magnitude:
            return m * magnitude
    return 10 * magnitude


def _date_ticks(start: date, end: date) -> list[tuple[date, str]]:
    span = (end - start).days
    if span > 3 * 365:
        step = max(1, round(span / 365 / 6))
        years = range(start.year + 1, end.year + 1, step)
        return [(date(y, 1, 1), str(y)) for y in years]
    months = 1 if span <= 200 else 3 if span <= 800 else 6
    out = []
    y, mth = start.year, start.month
    while True:
        mth += 1
        if mth > 12:
            y, mth = y + 1, 1
        day = date(y, mth, 1)
        if day > end:
            break
        if (mth - 1) % months == 0:
            out.append((day, day.strftime("%b %Y")))
    return out


def igg_chart(history: dict[str, Any]) -> dict[str, Any] | None:
    """Coordinates for the dated results, the first-dose and order markers and the
    thresholds; None when no result is dated (the table still lists them)."""
    dated = [r for r in history.get("results") or [] if r.get("date")]
    if not dated:
        return None
    days = [date.fromisoformat(r["date"]) for r in dated]
    markers_in = [(kind, history.get(f"{kind}_date"), history.get(f"{kind}_reference"))
                  for kind in ("first_dose", "order")]
    extra = [date.fromisoformat(d) for _, d, _ in markers_in if d]
    lo, hi = min(days + extra), max(days + extra)
    pad = max(timedelta(days=30), (hi - lo) * 0.04)
    start, end = lo - pad, hi + pad
    thresholds = history.get("thresholds") or []
    top_value = max([r["value_mg_dl"] for r in dated] + [t["mg_dl"] for t in thresholds])
    step = _nice_step(max(top_value * 1.15, 1))
    y_max = step * math.ceil(max(top_value * 1.15, 1) / step)
    x0, x1, y0, y1 = LEFT, WIDTH - RIGHT, HEIGHT - BOTTOM, TOP  # y0: the axis (value 0)
    span = (end - start).days

    def x(day: date) -> float:
        return round(x0 + (day - start).days / span * (x1 - x0), 1)

    def y(value: float) -> float:
        return round(y0 - min(value, y_max) / y_max * (y0 - y1), 1)

    points = []
    for r, day in zip(dated, days):
        comparator = r.get("comparator") or ""
        points.append({
            "x": x(day), "y": y(r["value_mg_dl"]), "timing": r["timing"], "reference": r["reference"],
            "label": f"IgG {comparator}{r['value_mg_dl']:g} mg/dL on {r['date']}, {TIMING_LABEL[r['timing']]}",
        })
    markers = []
    for row, (kind, when, ref) in enumerate((m for m in markers_in if m[1])):
        name = "First immune globulin dose" if kind == "first_dose" else "Order date"
        mx = x(date.fromisoformat(when))
        # Labels near an edge grow inwards, so none is cut off.
        anchor = "start" if mx < x0 + (x1 - x0) * 0.25 else "end" if mx > x0 + (x1 - x0) * 0.75 else "middle"
        markers.append({"x": mx, "kind": kind, "reference": ref, "label": f"{name} {when}",
                        "label_y": TOP - 26 + 14 * row, "anchor": anchor})
    n_steps = round(y_max / step)
    return {
        "width": WIDTH, "height": HEIGHT, "x0": x0, "x1": x1, "y0": y0, "y1": y1,
        "x_ticks": [{"x": x(d), "label": label} for d, label in _date_ticks(start, end)],
        "y_ticks": [{"y": y(i * step), "label": f"{i * step:g}"} for i in range(n_steps + 1)],
        "points": points,
        "markers": markers,
        "thresholds": [{"y": y(t["mg_dl"]),
                        "label": f"{'below' if t['kind'] == 'below' else 'at least'} {t['mg_dl']:g} mg/dL"}
                       for t in thresholds],
    }
