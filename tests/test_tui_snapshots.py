"""Every area of the dashboard pinned as a picture at 120x36 and 80x24, on fixed data and a frozen clock."""

from __future__ import annotations

import pytest
from tui_fakes import NOW, FakeApi

from tui.app import ApplianceApp
from tui.widgets.chrome import AREAS, KEYS

SIZES = [(120, 36), (80, 24)]


def make_app() -> ApplianceApp:
    # live=False: no event stream and no polling, so nothing changes between two runs
    return ApplianceApp(FakeApi(), live=False, clock=lambda: NOW)


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


def test_readonly_snapshot(snap_compare):
    """Read-only says so on every tab bar."""
    assert snap_compare(ApplianceApp(FakeApi(), live=False, readonly=True, clock=lambda: NOW),
                        terminal_size=(120, 36), run_before=settled)


def test_confirmation_snapshot(snap_compare):
    async def promote(pilot):
        await settled(pilot)
        await pilot.press("6")
        await settled(pilot)
        await pilot.press("p", "enter")
        await settled(pilot)

    assert snap_compare(make_app(), terminal_size=(80, 24), run_before=promote)
