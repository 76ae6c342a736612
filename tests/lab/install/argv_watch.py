"""Watch every command line on the machine for a secret, for the whole of a run.

Lab hosts share the build machine's kernel, so their processes are visible in its /proc; a
scan of /proc/*/cmdline costs a few milliseconds of CPU, so it samples far more often than `ps` over
nsenter could. Matching is by the secret's value, which is unique to one lab activation.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field


@dataclass
class Sighting:
    pid: int
    args: str
    first: float
    last: float


@dataclass
class ArgvWatch:
    secret: str
    sightings: dict[int, Sighting] = field(default_factory=dict)
    scans: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> ArgvWatch:
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _loop(self) -> None:
        needle = self.secret.encode()
        while not self._stop.is_set():
            now = time.monotonic()
            for name in os.listdir("/proc"):
                if not name.isdigit():
                    continue
                try:
                    with open(f"/proc/{name}/cmdline", "rb") as fh:
                        raw = fh.read()
                except OSError:
                    continue
                if needle in raw:
                    pid = int(name)
                    seen = self.sightings.get(pid)
                    if seen is None:
                        args = raw.replace(b"\0", b" ").decode(errors="replace").strip()
                        self.sightings[pid] = Sighting(pid, args.replace(self.secret, "***"),
                                                       now, now)
                    else:
                        seen.last = now
            self.scans += 1
            time.sleep(0.01)  # a scan costs ~4 ms of CPU; the child lives ~0.5 s

    def holders(self, *, except_register: bool = True) -> list[str]:
        """Command lines that held the secret, other than AWS's own register child."""
        return [s.args for s in self.sightings.values()
                if not (except_register and "amazon-ssm-agent -register" in s.args)]

    def register_seconds(self) -> float:
        """How long, in all, the register child's argv was seen."""
        return sum(s.last - s.first for s in self.sightings.values()
                   if "amazon-ssm-agent -register" in s.args)

    def seen_after(self, moment: float) -> list[Sighting]:
        return [s for s in self.sightings.values() if s.last > moment]
