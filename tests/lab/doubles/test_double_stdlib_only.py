"""The doubles run on a bare python3: stdlib imports only, and they start with no site-packages."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest
from doubles_helpers import ECS, PYTHON, SSM


@pytest.mark.parametrize("script", [SSM, ECS], ids=["ssm", "ecs"])
def test_the_double_imports_only_standard_library_modules(script: Path) -> None:
    tree = ast.parse(script.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, "a double must not import its siblings"
            names.add((node.module or "").split(".")[0])
    assert names <= set(sys.stdlib_module_names) | {"__future__"}, names - set(
        sys.stdlib_module_names
    )


@pytest.mark.parametrize(
    ("script", "args", "expect"),
    [
        (SSM, ["-version"], "SSM Agent version: "),
        (ECS, ["version"], "ecs-init version "),
    ],
    ids=["ssm", "ecs"],
)
def test_the_double_runs_in_an_isolated_interpreter_without_site_packages(
    script: Path, args: list[str], expect: str, tmp_path: Path
) -> None:
    env = {"PATH": "/usr/bin:/bin", "ANYWHERE_LAB_DOUBLE_ROOT": str(tmp_path)}
    for python in {PYTHON, sys.executable}:
        done = subprocess.run(
            [python, "-I", "-S", str(script), *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith(expect) and "lab double" in done.stdout
        compiled = subprocess.run(
            [python, "-I", "-S", "-m", "py_compile", str(script)],
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert compiled.returncode == 0, compiled.stderr
