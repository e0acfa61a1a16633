"""Every GPU, nvitop-like: utilisation, memory, temperature and power over time, and the processes on each."""

from __future__ import annotations

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Static
from textual_plotext import PlotextPlot

from ..client import ApiError, NotInstalled
from ..gpu import GpuHistory, gpu_block, gpus_from_prometheus

POLL_S = 2.0


class GpuView(Screen):
    BINDINGS = [Binding("escape,q", "back", "Back")]

    def __init__(self, history: GpuHistory | None = None):
        super().__init__()
        self.history = history or GpuHistory()
        self._built: list[str] = []

    def compose(self) -> ComposeResult:
        yield Static("[b]GPUs[/b] [dim](every poll adds a point; q goes back)[/]", classes="heading")
        yield VerticalScroll(id="gpu-list")
        yield Footer()

    def on_mount(self) -> None:
        self.set_interval(POLL_S, self.poll)
        self.poll()

    def action_back(self) -> None:
        self.dismiss()

    @work(exclusive=True, exit_on_error=False, group="gpus")
    async def poll(self) -> None:
        try:
            gpus = gpus_from_prometheus(await self.app.api.get_text("/metrics"))
        except NotInstalled:
            gpus = []
        except ApiError as exc:
            self.app.report(exc)
            return
        self.history.add(gpus, self.app.clock())
        await self._draw(gpus)

    async def _draw(self, gpus: list[dict]) -> None:
        box = self.query_one("#gpu-list", VerticalScroll)
        names = [g["gpu"] for g in gpus]
        if names != self._built:
            await box.remove_children()
            widgets = []
            for g in gpus:
                widgets += [Static(id=f"{g['gpu']}-text"), PlotextPlot(id=f"{g['gpu']}-chart", classes="gpu-chart")]
            await box.mount_all(widgets or [Static("[dim]no GPU reported by the daemon[/]")])
            self._built = names
        for g in gpus:
            self.query_one(f"#{g['gpu']}-text", Static).update(gpu_block(g))
            chart = self.query_one(f"#{g['gpu']}-chart", PlotextPlot)
            hist = self.history.of(g["gpu"])
            plt = chart.plt
            plt.clear_data()
            plt.clear_figure()
            times = list(hist.get("time", []))
            if times:
                xs = [t - times[-1] for t in times]
                for key, label in (("utilization_pct", "util %"), ("memory_pct", "mem %"),
                                   ("temperature_c", "temp C")):
                    pairs = [(x, y) for x, y in zip(xs, hist[key], strict=True) if y is not None]
                    if pairs:
                        plt.plot([x for x, _ in pairs], [y for _, y in pairs], label=label)
                plt.ylim(0, 100)
                plt.xlabel("seconds ago")
            chart.refresh()
