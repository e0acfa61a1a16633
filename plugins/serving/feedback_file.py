"""Reading a file of feedback labels for ``appliance feedback FILE`` (on the client's side, never in the daemon)."""

from __future__ import annotations

import math
from pathlib import Path


def read_file(path: str | Path) -> list[dict]:
    """``[{"request_id", "labels"}]`` from a CSV or Parquet file with columns ``request_id`` and ``label``, and
    ``row_index`` where a request logged several rows (labels are then put in row order). A ValueError names the
    file's problem."""
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    path = Path(path)
    try:
        if path.suffix.lower() == ".parquet":
            table = pq.read_table(path)
        else:
            table = pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(
                column_types={"request_id": "string"}, strings_can_be_null=False))
    except Exception as exc:
        raise ValueError(f"{path}: not a readable CSV or Parquet file: {str(exc).splitlines()[0]}") from None
    missing = [c for c in ("request_id", "label") if c not in table.column_names]
    if missing:
        raise ValueError(f"{path}: no column {missing[0]!r}; a feedback file has request_id and label (and "
                         f"row_index for requests of several rows); it has {', '.join(table.column_names)}")
    ids = table.column("request_id").to_pylist()
    labels = table.column("label").to_pylist()
    rows = table.column("row_index").to_pylist() if "row_index" in table.column_names else [0] * len(ids)
    grouped: dict[str, list[tuple[int, float]]] = {}
    for line, (rid, label, row) in enumerate(zip(ids, labels, rows, strict=True), start=2):
        if rid is None or label is None or not isinstance(label, int | float) or not math.isfinite(label):
            raise ValueError(f"{path}: line {line}: request_id {rid!r} needs a numeric label, got {label!r}")
        grouped.setdefault(str(rid), []).append((int(row or 0), float(label)))
    return [{"request_id": rid, "labels": [v for _, v in sorted(pairs)]} for rid, pairs in grouped.items()]
