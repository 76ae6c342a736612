"""A benchmark's result: one JSON line appended to the results file, and echoed to stdout."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def append_record(results: Path, record: dict[str, Any]) -> None:
    with results.open("a") as out:
        out.write(json.dumps(record) + "\n")
    print(json.dumps(record))
