"""Every area of the dashboard pinned as a picture at 120x36 and 80x24 (the Overview at 200x50 too), on the
demo daemon's recorded answers (``tui_fakes``: recorded from, and checked against, the real daemon) and a
frozen clock. Regenerate with ``pytest tests/test_tui_snapshots.py --snapshot-update`` after a recording."""

from __future__ import annotations

import pytest
from tui_fakes import METRICS, NOW, FakeApi, more_gpus

from tui.app import ApplianceApp
from tui.widgets.chrome import AREAS, KEYS

SIZES = [(120, 36), (80, 24)]


def make_app(**kw) -> ApplianceApp:
    # live=False: no event stream and no polling, so nothing changes between two runs
    return ApplianceApp(FakeApi(metrics=more_gpus(METRICS, 3)), live=False, clock=lambda: NOW, **kw)


async def settled(pilot) -> None:
    await pilot.pause()
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize(("key", "area"), [(k, a) for k, (a, _) in zip(KEYS, AREAS, strict=True)],
                         ids=[a for a, _ in AREAS])
def test_area_snapshot(snap_compare, key, area, size):
    async def show(pilot):
        await settled(pilot)
        await pilot.press(key)
        await settled(pilot)
        assert pilot.app.current_mode == area

    assert snap_compare(make_app(), terminal_size=size, run_before=show)


def test_overview_uses_a_large_terminal(snap_compare):
    assert snap_compare(make_app(), terminal_size=(200, 50), run_before=settled)


def test_readonly_snapshot(snap_compare):
    """Read-only says so on the tab bar, at a width where the full tab names nearly fill it."""
    assert snap_compare(make_app(readonly=True, area="jobs"), terminal_size=(115, 30), run_before=settled)


def test_confirmation_snapshot(snap_compare):
    async def promote(pilot):
        await settled(pilot)
        await pilot.press("6")
        await settled(pilot)
        pilot.app.screen.query_one("#versions").focus()
        await pilot.press("p", "enter")
        await settled(pilot)

    assert snap_compare(make_app(), terminal_size=(80, 24), run_before=promote)


def test_help_snapshot(snap_compare):
    async def help_on_jobs(pilot):
        await settled(pilot)
        await pilot.press("question_mark")
        await settled(pilot)

    assert snap_compare(make_app(area="jobs"), terminal_size=(120, 36), run_before=help_on_jobs)
