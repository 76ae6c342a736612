#!/bin/sh
# install_wheel.sh VENV PYTHON WHEEL LINK CONFIG_DIR WHEEL_CHANGED
# The project's venv, its wheel, the dependency check, the command link and the config
# directory, in one run of sh: each Ansible module run costs the node a Python start (about
# 0.2 CPU-s), and this is most of what a fresh node did in five of them. The last line says
# what changed ("changed: venv wheel link configdir" or "changed:"); the role reads it.
set -eu
venv=$1 python=$2 wheel=$3 link=$4 config_dir=$5 wheel_changed=$6
changed=""

if [ ! -x "$venv/bin/python" ]; then
    "$python" -m venv "$venv"
    changed="$changed venv"
fi

if [ "$wheel_changed" = true ] || [ ! -x "$venv/bin/anywhere-agent" ]; then
    # --no-index: dependencies must already be in the venv (a lab host, or a node the
    # offline bundle installed once). --no-compile: the command compiles what it imports on
    # first use; the lab and the registrar are never imported on a node.
    "$venv/bin/pip" install -q --no-index --no-cache-dir --disable-pip-version-check \
        --force-reinstall --no-deps --no-compile "$wheel"
    changed="$changed wheel"
    # pip check, for this one distribution and at a third of its cost: every requirement
    # of anywhere-agent installed at a version its specifier allows (pip's own parser).
    rc=0
    missing=$("$venv/bin/python" - <<'PY'
from importlib import metadata

try:
    from pip._vendor.packaging.requirements import Requirement
except ImportError:  # a pip without its vendored packaging: fall back to `pip check`
    raise SystemExit(2)

bad = []
for line in metadata.requires("anywhere-agent") or []:
    req = Requirement(line)
    if req.marker is not None and not req.marker.evaluate({"extra": ""}):
        continue
    try:
        have = metadata.version(req.name)
    except metadata.PackageNotFoundError:
        bad.append(f"{req.name} (missing)")
        continue
    if not req.specifier.contains(have, prereleases=True):
        bad.append(f"{req.name} {have} (wants {req.specifier})")
print(", ".join(bad))
raise SystemExit(1 if bad else 0)
PY
    ) || rc=$?
    if [ "$rc" -eq 2 ]; then
        missing=$("$venv/bin/pip" check --disable-pip-version-check) && rc=0 || rc=1
    fi
    if [ "$rc" -ne 0 ]; then
        echo "$venv lacks anywhere-agent's dependencies: $missing; the node cannot download" \
             "them: install once with ecs_anywhere_node_offline_bundle (installer/install.sh" \
             "and \`anywhere-agent bundle\`)" >&2
        exit 3
    fi
fi

if [ "$(readlink "$link" 2>/dev/null || true)" != "$venv/bin/anywhere-agent" ]; then
    mkdir -p "$(dirname "$link")"
    ln -sfn "$venv/bin/anywhere-agent" "$link"
    changed="$changed link"
fi

if [ ! -d "$config_dir" ]; then
    install -d -m 0700 -o root -g root "$config_dir"
    changed="$changed configdir"
fi

echo "changed:$changed"
