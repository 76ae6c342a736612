"""The idle doubles keep out modules only some paths use (each stays resident once imported),
and their stdlib-free UUIDs are real version 4 UUIDs."""

from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path

import pytest
from doubles_helpers import ECS, PYTHON, SSM

# uuid (+ platform): random IDs are os.urandom; subprocess, tarfile: the ECS double builds a
# task image only on a host with Docker.
NOT_AT_START = {SSM: ("uuid", "platform"),
                ECS: ("uuid", "platform", "subprocess", "tarfile")}

LOAD = """
import importlib.util, json, sys
spec = importlib.util.spec_from_file_location("double", sys.argv[1])
double = importlib.util.module_from_spec(spec)
spec.loader.exec_module(double)
modules = sorted(sys.modules)
make = getattr(double, "uuid4", None)
print(json.dumps({"modules": modules, "ids": [make() for _ in range(50)] if make else []}))
"""


@pytest.mark.parametrize("script", [SSM, ECS], ids=["ssm", "ecs"])
def test_a_loaded_double_has_not_imported_what_only_other_paths_use(script: Path) -> None:
    out = subprocess.run([PYTHON, "-I", "-S", "-c", LOAD, str(script)], capture_output=True,
                         text=True, timeout=30, check=True)
    loaded = set(json.loads(out.stdout)["modules"])
    assert loaded.isdisjoint(NOT_AT_START[script]), loaded & set(NOT_AT_START[script])


@pytest.mark.parametrize("script", [SSM, ECS], ids=["ssm", "ecs"])
def test_the_doubles_random_ids_are_distinct_version_4_uuids(script: Path) -> None:
    out = subprocess.run([PYTHON, "-I", "-S", "-c", LOAD, str(script)], capture_output=True,
                         text=True, timeout=30, check=True)
    ids = json.loads(out.stdout)["ids"]
    assert ids, "the double has no uuid4()"
    parsed = [uuid.UUID(i) for i in ids]
    assert len(set(ids)) == len(ids)
    assert all(u.version == 4 and u.variant == uuid.RFC_4122 and str(u) == i
               for u, i in zip(parsed, ids, strict=True))
