"""`mana personas report`: per module, the average rating of the last N days, its change against
the N days before, and the action counts; as a terminal table and as a PNG bar chart.

The chart is drawn with matplotlib's Agg canvas directly (no pyplot, so no global figure state
and no display needed).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from personas.store import ModuleStats, PersonaStore


@dataclass(frozen=True)
class ReportRow:
    module: str
    average: float | None
    previous: float | None
    ratings: int
    actions: int
    errors: int
    previous_actions: int

    @property
    def change(self) -> float | None:
        if self.average is None or self.previous is None:
            return None
        return self.average - self.previous


@dataclass(frozen=True)
class Report:
    days: int
    start: datetime
    end: datetime
    rows: list[ReportRow]
    failed_ratings: int

    @property
    def empty(self) -> bool:
        return not self.rows

    @property
    def actions(self) -> int:
        return sum(r.actions for r in self.rows)


async def build_report(store: PersonaStore, days: int = 7) -> Report:
    if days < 1:
        raise ValueError("--days must be at least 1")
    now = store.clock.now()
    end = now + timedelta(microseconds=1)  # include rows stamped exactly now
    start = now - timedelta(days=days)
    before = start - timedelta(days=days)
    current = await store.module_stats(start, end)
    previous = await store.module_stats(before, start)
    rows = []
    for module in sorted(set(current) | set(previous)):
        cur = current.get(module, ModuleStats(module))
        prev = previous.get(module, ModuleStats(module))
        if not (cur.ratings or cur.actions or prev.ratings):
            continue
        rows.append(
            ReportRow(
                module=module,
                average=cur.average,
                previous=prev.average,
                ratings=cur.ratings,
                actions=cur.actions,
                errors=cur.errors,
                previous_actions=prev.actions,
            )
        )
    failed = await store.failed_ratings(start, end)
    return Report(days, start, now, rows, failed)


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def change_text(row: ReportRow) -> str:
    if row.change is None:
        return "new" if row.average is not None and row.previous is None else "-"
    return f"{row.change:+.2f}"


def table(report: Report) -> tuple[list[str], list[list[str]]]:
    headers = ["MODULE", "AVG", "PREV", "CHANGE", "RATINGS", "ACTIONS", "ERRORS", "PREV ACTIONS"]
    rows = [
        [
            r.module,
            _num(r.average),
            _num(r.previous),
            change_text(r),
            str(r.ratings),
            str(r.actions),
            str(r.errors),
            str(r.previous_actions),
        ]
        for r in report.rows
    ]
    return headers, rows


def period_text(report: Report) -> str:
    return f"{report.start:%Y-%m-%d %H:%M} to {report.end:%Y-%m-%d %H:%M} UTC"


# -- chart ----------------------------------------------------------------------------------------

CURRENT = "#2f6fb3"
PREVIOUS = "#b9c4cf"
OK = "#3c9d5d"
ERROR = "#d0473c"
FLAT = 0.1  # a change smaller than this is drawn grey


def write_chart(report: Report, path: Path) -> Path:
    """Two panels sharing one legend: average rating per module (the previous period beside this
    one, the change above each pair) and tool calls per module (previous period beside this
    one, ok and failed stacked)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch
    from matplotlib.ticker import MaxNLocator

    rows = report.rows
    modules = [r.module for r in rows]
    width = max(10.0, 1.3 * len(modules) + 3)
    fig = Figure(figsize=(width, 8.6 if rows else 3.0), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    fig.suptitle(
        f"Persona ratings and tool calls per module: last {report.days} days\n"
        f"{period_text(report)}, compared with the {report.days} days before",
        fontsize=13,
        fontweight="bold",
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    if not rows:
        ax = fig.subplots()
        ax.set_axis_off()
        ax.text(
            0.5, 0.5, "No persona activity in this period", ha="center", va="center", fontsize=14
        )
        fig.savefig(path, format="png")
        return path

    top, bottom = fig.subplots(2, 1, height_ratios=[3, 2])
    xs = list(range(len(modules)))
    bar = 0.38
    left = [x - bar / 2 for x in xs]
    right = [x + bar / 2 for x in xs]

    # -- ratings --
    prev_bars = top.bar(left, [r.previous or 0.0 for r in rows], bar, color=PREVIOUS)
    cur_bars = top.bar(right, [r.average or 0.0 for r in rows], bar, color=CURRENT)
    top.bar_label(
        prev_bars,
        labels=[_num(r.previous) if r.previous is not None else "" for r in rows],
        padding=2,
        fontsize=8,
        color="#555555",
    )
    top.bar_label(
        cur_bars,
        labels=[
            f"{r.average:.2f}\n(n={r.ratings})" if r.average is not None else "no rating"
            for r in rows
        ],
        padding=2,
        fontsize=9,
    )
    for x, row in zip(xs, rows, strict=True):
        text = change_text(row)
        if text == "-":
            continue
        color = "#555555"  # new, or within ±0.1: flat
        if row.change is not None and row.change >= FLAT:
            color = OK
        elif row.change is not None and row.change <= -FLAT:
            color = ERROR
        top.text(
            x,
            5.5,
            "new" if text == "new" else f"change {text}",
            ha="center",
            va="bottom",
            fontsize=9,
            fontweight="bold",
            color=color,
        )
    top.set_ylim(0, 6.0)
    top.set_yticks([1, 2, 3, 4, 5])
    top.set_ylabel("average rating (1-5)")
    top.set_xticks(xs, modules)
    top.axhline(5, color="#dddddd", linewidth=0.8, zorder=0)
    top.spines[["top", "right"]].set_visible(False)

    # -- tool calls --
    prev_actions = [r.previous_actions for r in rows]
    oks = [r.actions - r.errors for r in rows]
    prev_call_bars = bottom.bar(left, prev_actions, bar, color=PREVIOUS)
    bottom.bar(right, oks, bar, color=OK)
    err_bars = bottom.bar(right, [r.errors for r in rows], bar, bottom=oks, color=ERROR)
    bottom.bar_label(
        prev_call_bars,
        labels=[str(n) if n else "" for n in prev_actions],
        padding=2,
        fontsize=8,
        color="#555555",
    )
    bottom.bar_label(
        err_bars,
        labels=[f"{r.actions}" + (f"\n({r.errors} failed)" if r.errors else "") for r in rows],
        padding=2,
        fontsize=9,
    )
    peak = max([r.actions for r in rows] + prev_actions + [1])
    bottom.set_ylim(0, peak * 1.3 + 1)
    bottom.yaxis.set_major_locator(MaxNLocator(integer=True))
    bottom.set_ylabel("tool calls")
    bottom.set_xticks(xs, modules)
    summary = f"{report.actions} tool call{'' if report.actions == 1 else 's'} in this period"
    if report.failed_ratings:
        summary += f"; {report.failed_ratings} unparsable rating(s) not counted above"
    bottom.set_title(summary, fontsize=10, loc="left")
    bottom.spines[["top", "right"]].set_visible(False)

    fig.legend(
        handles=[
            Patch(color=PREVIOUS, label="previous period"),
            Patch(color=CURRENT, label="rating, this period"),
            Patch(color=OK, label="ok calls, this period"),
            Patch(color=ERROR, label="failed calls, this period"),
        ],
        loc="outside lower center",
        ncols=4,
        frameon=False,
        fontsize=9,
    )
    fig.savefig(path, format="png")
    return path


__all__ = ["Report", "ReportRow", "build_report", "change_text", "table", "write_chart"]
