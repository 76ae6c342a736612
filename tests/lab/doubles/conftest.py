"""Fixtures for the agent-double tests (the helpers live in doubles_helpers.py)."""

import sys
from pathlib import Path

# pytest 9 imports test modules in importlib mode, which leaves sys.path alone; the test modules
# here import their helpers as a top-level module, so make this directory importable.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from doubles_helpers import fake_plane, lab_root, processes, repos

__all__ = ["fake_plane", "lab_root", "processes", "repos"]
