"""The run-health plots of the overview screen (textual-plotext)."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Grid
from textual_plotext import PlotextPlot

from mrtui.store.health import Health

PLOTS = (
    ("scores", "judge scores 0-5"),
    ("length", "mean response chars"),
    ("parse", "parse fail % judge/meta"),
    ("first", "1st-position wins %"),
    ("fives", "share of 5s % (collapse)"),
    ("loss", "DPO loss per step"),
)


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{v:.0%}"


class HealthPlots(Grid):
    DEFAULT_CSS = """
    HealthPlots { grid-size: 3 2; grid-gutter: 0 1; height: 1fr; min-height: 16; }
    HealthPlots PlotextPlot { height: 1fr; }
    """

    def compose(self) -> ComposeResult:
        for name, _ in PLOTS:
            yield PlotextPlot(id=f"plot-{name}")

    def on_mount(self) -> None:
        self.update({}, {})

    def _plot(self, name: str) -> PlotextPlot:
        return self.query_one(f"#plot-{name}", PlotextPlot)

    def update(self, health: dict[int, Health], losses: dict[int, list[tuple[int, float]]]) -> None:
        its = sorted(health)
        labels = [f"it{i}" for i in its]
        titles = dict(PLOTS)
        if its:
            last = health[its[-1]]
            titles["parse"] += f" · it{its[-1]} {_pct(last.judge_parse_failure_rate)}/" + _pct(
                last.meta_parse_failure_rate
            )
            titles["first"] += f" · it{its[-1]} {_pct(last.first_position_win_rate)}"
            titles["fives"] += f" · it{its[-1]} {_pct(last.share_of_fives)}"
        for name in titles:
            w = self._plot(name)
            w.plt.clear_figure()
            w.plt.title(titles[name])
        if its:
            p = self._plot("scores").plt
            # textual-plotext's stub names the keyword `label`; plotext 5.3 takes `labels`.
            p.multiple_bar(  # type: ignore[call-arg]
                [str(s) for s in range(6)],
                [health[i].scores for i in its],
                labels=labels,
            )
            p = self._plot("length").plt
            p.bar(labels, [round(health[i].mean_response_chars or 0) for i in its], width=0.4)
            p = self._plot("parse").plt
            p.multiple_bar(  # type: ignore[call-arg]  # `labels`: as above
                labels,
                [
                    [round(100 * (health[i].judge_parse_failure_rate or 0), 1) for i in its],
                    [round(100 * (health[i].meta_parse_failure_rate or 0), 1) for i in its],
                ],
                labels=["judge", "meta"],
            )
            p = self._plot("first").plt
            p.bar(
                labels,
                [round(100 * (health[i].first_position_win_rate or 0), 1) for i in its],
                width=0.4,
            )
            p.ylim(0, 100)
            p = self._plot("fives").plt
            p.bar(labels, [round(100 * (health[i].share_of_fives or 0), 1) for i in its], width=0.4)
            p.ylim(0, 100)
        p = self._plot("loss").plt
        for it in sorted(losses):
            steps = losses[it]
            if steps:
                p.plot([s for s, _ in steps], [v for _, v in steps], label=f"it{it}")
        for name in titles:
            self._plot(name).refresh()
