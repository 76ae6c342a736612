"""What the benchmarks share: a result as one JSON line (appended, echoed), a process's memory."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def append_record(results: Path, record: dict[str, Any]) -> None:
    with results.open("a") as out:
        out.write(json.dumps(record) + "\n")
    print(json.dumps(record))


def rollup(pid: int | str) -> dict[str, int]:
    """/proc/PID/smaps_rollup's KiB fields (Pss, Private_Dirty, ...): one process's memory."""
    out = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        key, _, rest = line.partition(":")
        out[key] = int(rest.split()[0])
    return out
