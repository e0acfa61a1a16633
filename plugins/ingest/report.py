"""How a batch's losses are put into words, the same in the job's log, the CLI and the dashboard's events."""

from __future__ import annotations


def quarantine_lines(batch: dict) -> list[str]:
    """One line per column and rule that cost a batch rows: the job's log and the CLI say the same."""
    out = []
    for r in batch.get("quarantine_rules") or []:
        where = f"column {r['column']!r}" if r["column"] else "the record"
        line = (f"quarantined {r['rows']} row(s): {where}, rule {r['rule']} (expected {r['expected']}), "
                f"e.g. {r['example']!r}")
        out.append(line + (f"; {r['hint']}" if r.get("hint") else ""))
    return out
