#!/bin/sh
# anywhere-agent installer: from a bare server to a running install, online or air-gapped.
#
# Puts the tool in /opt/anywhere-agent/venv (from a verified offline bundle, or from a package
# index / internal mirror), links /usr/local/bin/anywhere-agent, then hands over to
# `anywhere-agent install`. POSIX sh: runs under dash, busybox ash and bash; shellcheck -s sh.
# Errors are one line on stderr ("install.sh: <what>; fix: <how>") with anywhere-agent's exit
# codes: 2 usage, 4 host cannot run it, 7 network, 8 disk, 10 package/checksum.
set -eu

PREFIX=/opt/anywhere-agent
VENV=$PREFIX/venv
BUNDLE_COPY=$PREFIX/bundle
INSTALLED_ID=$PREFIX/installed.id
LINK=/usr/local/bin/anywhere-agent
CODE_ENV=ANYWHERE_AGENT_ACTIVATION_CODE
PROG=install.sh

usage() {
    cat <<EOF
Usage: $PROG [OPTIONS] [--] [FLAGS FOR anywhere-agent install ...]
       $PROG --uninstall [FLAGS FOR anywhere-agent uninstall ...]

Installs anywhere-agent into $VENV, links $LINK, then runs
\`anywhere-agent install\` with the remaining flags. Re-running upgrades in place when the
source holds another version, and otherwise changes nothing.

Where anywhere-agent comes from (a bundle is used when given or when this script sits in one):
  --bundle DIR|FILE.tar.gz  offline bundle made by \`anywhere-agent bundle\`; every file is
                            checked against its manifest.sha256 before anything is installed
  --index-url URL           package index or internal mirror (default: pip's configuration)
  --extra-index-url URL     an additional index
  --version VERSION         exact anywhere-agent version to take from the index
  --proxy URL               proxy for the index (default: --https-proxy among the install
                            flags, then ANYWHERE_AGENT_HTTPS_PROXY, https_proxy, http_proxy)

Host:
  --python PATH             python3 (3.9 or later) to build the venv with
  --install-python          install python3 and its venv module from the distro when missing
  --no-handover             stop after installing the tool; do not run \`anywhere-agent install\`
  --verify-only             check the bundle against its manifest.sha256 and exit (no root
                            needed, changes nothing)
  --uninstall               run \`anywhere-agent uninstall\`, then remove $PREFIX and
                            the link
  -h, --help                show this help

The activation code is never a command-line argument: set $CODE_ENV in the
environment, or pass --activation-code-file FILE (or - for standard input) among the install
flags, e.g.
  $PROG --bundle ./bundle -- --region eu-west-1 --cluster prod \\
      --activation-id "\$ID" --activation-code-file /root/code
EOF
}

say() { printf '%s: %s\n' "$PROG" "$*"; }

# die CODE MESSAGE FIX: the one-line error every failure prints.
die() {
    code=$1
    shift
    if [ $# -ge 2 ]; then
        printf '%s: %s; fix: %s\n' "$PROG" "$1" "$2" >&2
    else
        printf '%s: %s\n' "$PROG" "$1" >&2
    fi
    exit "$code"
}

need_value() {  # need_value OPTION REMAINING-COUNT
    [ "$2" -gt 0 ] || die 2 "option $1 needs a value" "see $PROG --help"
}

# -- arguments -------------------------------------------------------------------------------
# Our own options are taken out; everything else is rotated to the end of "$@" in order and
# handed to `anywhere-agent install` (or uninstall) untouched.
BUNDLE=
INDEX_URL=
EXTRA_INDEX_URL=
VERSION=
PROXY=
PYTHON=
INSTALL_PYTHON=0
HANDOVER=1
UNINSTALL=0
VERIFY_ONLY=0
own_done=0
n=$#
while [ "$n" -gt 0 ]; do
    arg=$1
    shift
    n=$((n - 1))
    if [ "$own_done" = 1 ]; then
        set -- "$@" "$arg"
        continue
    fi
    case $arg in
        -h | --help) usage; exit 0 ;;
        --bundle | --index-url | --extra-index-url | --version | --proxy | --python)
            need_value "$arg" "$n"
            val=$1
            shift
            n=$((n - 1))
            case $val in
                '') die 2 "option $arg needs a non-empty value" "see $PROG --help" ;;
            esac
            case $arg in
                --bundle) BUNDLE=$val ;;
                --index-url) INDEX_URL=$val ;;
                --extra-index-url) EXTRA_INDEX_URL=$val ;;
                --version) VERSION=$val ;;
                --proxy) PROXY=$val ;;
                --python) PYTHON=$val ;;
            esac
            ;;
        --bundle=* | --index-url=* | --extra-index-url=* | --version=* | --proxy=* | --python=*)
            val=${arg#*=}
            [ -n "$val" ] || die 2 "option ${arg%%=*} needs a non-empty value" "see $PROG --help"
            case $arg in
                --bundle=*) BUNDLE=$val ;;
                --index-url=*) INDEX_URL=$val ;;
                --extra-index-url=*) EXTRA_INDEX_URL=$val ;;
                --version=*) VERSION=$val ;;
                --proxy=*) PROXY=$val ;;
                --python=*) PYTHON=$val ;;
            esac
            ;;
        --install-python) INSTALL_PYTHON=1 ;;
        --no-handover) HANDOVER=0 ;;
        --uninstall) UNINSTALL=1 ;;
        --verify-only) VERIFY_ONLY=1 ;;
        --) own_done=1 ;;
        *) set -- "$@" "$arg" ;;
    esac
done

# The code must never be on a command line (ps, shell history): not ours, not install's.
for arg in "$@"; do
    case $arg in
        --activation-code | --activation-code=*)
            die 2 "the activation code must not be given on the command line (it shows in ps and shell history)" \
                "set $CODE_ENV or pass --activation-code-file FILE|-; consider revoking this activation"
            ;;
    esac
done

if [ -n "$BUNDLE" ] && { [ -n "$INDEX_URL" ] || [ -n "$EXTRA_INDEX_URL" ] || [ -n "$VERSION" ]; }; then
    die 2 "--bundle cannot be combined with --index-url, --extra-index-url or --version" \
        "a bundle pins its own versions; choose one source"
fi

# -- host checks -----------------------------------------------------------------------------
if [ "$VERIFY_ONLY" = 1 ] && [ -z "$BUNDLE" ]; then
    die 2 "--verify-only needs --bundle DIR|FILE.tar.gz" "see $PROG --help"
fi
[ "$VERIFY_ONLY" = 1 ] || [ "$(id -u)" = 0 ] || die 4 "must run as root" "sudo sh $0 ..."

case $(uname -m) in
    x86_64 | amd64) HOST_ARCH=x86_64 ;;
    aarch64 | arm64) HOST_ARCH=arm64 ;;
    *) die 4 "unsupported architecture $(uname -m)" "ECS Anywhere runs on x86_64 and arm64 hosts" ;;
esac

if command -v apt-get >/dev/null 2>&1; then
    HOST_FAMILY=deb
elif command -v dnf >/dev/null 2>&1 || command -v yum >/dev/null 2>&1 || command -v zypper >/dev/null 2>&1; then
    HOST_FAMILY=rpm
else
    HOST_FAMILY=unknown
fi

# -- uninstall -------------------------------------------------------------------------------
remove_link() {
    if [ -L "$LINK" ]; then
        case $(readlink "$LINK") in
            "$PREFIX"/*) rm -f "$LINK" ;;
            *) say "left $LINK alone: it does not point into $PREFIX" ;;
        esac
    fi
}

if [ "$UNINSTALL" = 1 ]; then
    if [ -x "$VENV/bin/anywhere-agent" ]; then
        rc=0
        "$VENV/bin/anywhere-agent" uninstall "$@" </dev/null || rc=$?
        if [ "$rc" != 0 ]; then
            die "$rc" "anywhere-agent uninstall failed (exit $rc); $VENV is kept so it can run again" \
                "see its messages above; --uninstall --force-local cleans up locally when AWS cannot be reached"
        fi
    else
        say "anywhere-agent is not installed in $VENV; removing what is left"
    fi
    remove_link
    rm -rf "$PREFIX"
    say "removed $PREFIX and $LINK"
    exit 0
fi

# -- bundle: verify first --------------------------------------------------------------------
NL='
'
WORK=
cleanup() {
    if [ -n "$WORK" ]; then rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

sha256_of() {  # sha256_of FILE: prints the hex digest (via stdin: no file-name escaping)
    if command -v sha256sum >/dev/null 2>&1; then
        set -- "$(sha256sum <"$1")"
    elif command -v shasum >/dev/null 2>&1; then
        set -- "$(shasum -a 256 <"$1")"
    else
        die 4 "neither sha256sum nor shasum is installed, so the bundle cannot be verified" \
            "install coreutils"
    fi
    printf '%s\n' "${1%% *}"
}

# verify_bundle DIR: every line of manifest.sha256 matches its file and every file is listed;
# the first mismatch is refused with one line naming the file. Reads only.
verify_bundle() {
    dir=$1
    manifest=$dir/manifest.sha256
    [ -f "$manifest" ] || die 10 "bundle $dir has no manifest.sha256" \
        "build it with \`anywhere-agent bundle\` and copy the whole directory"
    listed=
    count=0
    while IFS= read -r line || [ -n "$line" ]; do
        case $line in '' | '#'*) continue ;; esac
        sum=${line%% *}
        rel=${line#* }
        rel=${rel#[ *]}
        case $sum in *[!0-9a-f]*) sum= ;; esac
        if [ "${#sum}" -ne 64 ] || [ -z "$rel" ]; then
            die 10 "bundle manifest.sha256 has a malformed line: $line" "copy the bundle again from a trusted build"
        fi
        case /$rel/ in
            //* | */../* | */./*)
                die 10 "bundle manifest.sha256 names a path outside the bundle: $rel" "copy the bundle again from a trusted build"
                ;;
        esac
        [ "$rel" != manifest.sha256 ] || continue
        if [ ! -f "$dir/$rel" ] || [ -L "$dir/$rel" ]; then
            die 10 "bundle file $rel is missing" "copy the bundle again from a trusted build"
        fi
        if [ "$(sha256_of "$dir/$rel")" != "$sum" ]; then
            die 10 "bundle file $rel does not match its checksum in manifest.sha256" \
                "copy the bundle again from a trusted build; it may have been tampered with"
        fi
        listed=$listed$NL$rel
        count=$((count + 1))
    done <"$manifest"
    [ "$count" -gt 0 ] || die 10 "bundle manifest.sha256 lists no files" "build the bundle again"
    # A file the manifest does not cover could be picked up by pip or apt: refuse it too.
    extra=$(cd "$dir" && find . ! -type d ! -name manifest.sha256 -print | while IFS= read -r f; do
        f=${f#./}
        case "$NL$listed$NL" in
            *"$NL$f$NL"*) ;;
            *) printf '%s\n' "$f"; break ;;
        esac
    done)
    if [ -n "$extra" ]; then
        die 10 "bundle file $extra is not listed in manifest.sha256" \
            "remove it, or copy the bundle again from a trusted build"
    fi
}

# bundle_field KEY: a top-level string of bundle.json (we write it: one key per line).
bundle_field() {
    sed -n "s/^  \"$1\": \"\\([^\"]*\\)\",\{0,1\}\$/\\1/p" "$BUNDLE/bundle.json"
}

# bundle_root DIR: DIR itself or its one subdirectory holding manifest.sha256.
bundle_root() {
    if [ -f "$1/manifest.sha256" ]; then
        printf '%s\n' "$1"
        return 0
    fi
    set -- "$1"/*/manifest.sha256
    [ $# -eq 1 ] && [ -f "$1" ] || return 1
    dirname "$1"
}

if [ -z "$BUNDLE" ] && [ -z "$INDEX_URL" ] && [ -z "$EXTRA_INDEX_URL" ] && [ -z "$VERSION" ]; then
    here=$(cd "$(dirname "$0")" && pwd)
    if [ -f "$here/manifest.sha256" ] && [ -f "$here/bundle.json" ]; then
        BUNDLE=$here
    fi
fi

if [ -n "$BUNDLE" ]; then
    GIVEN_BUNDLE=$BUNDLE
    if [ -f "$BUNDLE" ]; then
        case $BUNDLE in
            *.tar.gz | *.tgz) ;;
            *) die 2 "bundle file $BUNDLE is not a .tar.gz" "pass the bundle directory or its .tar.gz" ;;
        esac
        WORK=$(mktemp -d "${TMPDIR:-/var/tmp}/anywhere-agent-bundle.XXXXXX") ||
            die 8 "cannot create a temporary directory" "free space in ${TMPDIR:-/var/tmp}"
        # -o: do not restore the archive's owners (GNU tar and busybox tar agree).
        tar -xzof "$BUNDLE" -C "$WORK" </dev/null ||
            die 10 "cannot unpack $BUNDLE" "copy the tarball again; it may be truncated"
        BUNDLE=$(bundle_root "$WORK") ||
            die 10 "$BUNDLE holds no manifest.sha256" "build it with \`anywhere-agent bundle --tarball\`"
    elif [ -d "$BUNDLE" ]; then
        BUNDLE=$(cd "$BUNDLE" && pwd)
    else
        die 2 "bundle $BUNDLE does not exist" "pass the bundle directory or its .tar.gz"
    fi
    verify_bundle "$BUNDLE"
    if [ "$VERIFY_ONLY" = 1 ]; then
        say "bundle $GIVEN_BUNDLE: every file matches manifest.sha256"
        exit 0
    fi
    if [ ! -f "$BUNDLE/bundle.json" ] || [ ! -f "$BUNDLE/requirements.txt" ]; then
        die 10 "bundle $BUNDLE lacks bundle.json or requirements.txt" "build it again with \`anywhere-agent bundle\`"
    fi
    B_ARCH=$(bundle_field target_arch)
    B_FAMILY=$(bundle_field distro_family)
    B_PYTHON=$(bundle_field python_version)
    B_VERSION=$(bundle_field project_version)
    B_ID=$(bundle_field install_id)
    if [ -z "$B_ARCH" ] || [ -z "$B_PYTHON" ] || [ -z "$B_ID" ]; then
        die 10 "bundle.json does not say its arch, python_version and install_id" "build the bundle again"
    fi
    [ "$B_ARCH" = "$HOST_ARCH" ] ||
        die 4 "the bundle is for $B_ARCH but this host is $HOST_ARCH" "build one with --arch $HOST_ARCH"
    if [ "$HOST_FAMILY" != unknown ] && [ -n "$B_FAMILY" ] && [ "$B_FAMILY" != "$HOST_FAMILY" ]; then
        die 4 "the bundle carries $B_FAMILY packages but this host uses $HOST_FAMILY" \
            "build one with --distro-family $HOST_FAMILY"
    fi
fi

# -- python ----------------------------------------------------------------------------------
py_ok() {  # py_ok PYTHON: 3.9 or later with venv and ensurepip
    "$1" -c 'import sys, venv, ensurepip; sys.exit(sys.version_info < (3, 9))' >/dev/null 2>&1
}

py_version() {
    "$1" -c 'import sys; print("%d.%d" % sys.version_info[:2])'
}

find_python() {
    if [ -n "$PYTHON" ]; then
        command -v "$PYTHON" >/dev/null 2>&1 && py_ok "$PYTHON" && return 0
        return 1
    fi
    # With a bundle, its Python comes first: its compiled wheels are built for that version.
    for cand in ${B_PYTHON:+python$B_PYTHON} python3 python3.13 python3.12 python3.11 python3.10 python3.9; do
        if command -v "$cand" >/dev/null 2>&1 && py_ok "$cand"; then
            if [ -z "${B_PYTHON:-}" ] || [ "$(py_version "$cand")" = "$B_PYTHON" ]; then
                PYTHON=$cand
                return 0
            fi
        fi
    done
    return 1
}

install_python() {
    say "installing python3 and its venv module from the distribution's repositories"
    if command -v apt-get >/dev/null 2>&1; then
        DEBIAN_FRONTEND=noninteractive
        export DEBIAN_FRONTEND
        apt-get update -q </dev/null || true
        apt-get install -y -q --no-install-recommends python3 python3-venv </dev/null
    elif command -v dnf >/dev/null 2>&1; then
        # RHEL 8's python3 is 3.6; its supported newer interpreters are separate packages.
        dnf install -y python3.11 </dev/null || dnf install -y python39 </dev/null ||
            dnf install -y python3 </dev/null
    elif command -v yum >/dev/null 2>&1; then
        yum install -y python3.11 </dev/null || yum install -y python3 </dev/null
    elif command -v zypper >/dev/null 2>&1; then
        zypper --non-interactive install python311 </dev/null ||
            zypper --non-interactive install python3 </dev/null
    else
        return 1
    fi
}

want_py=${B_PYTHON:+" $B_PYTHON"}
if ! find_python; then
    if [ "$INSTALL_PYTHON" = 1 ] && [ -z "$PYTHON" ]; then
        install_python || die 10 "could not install python3 from the distribution" \
            "install python3$want_py with its venv module by hand, then run $PROG again"
        find_python || die 4 "no python3$want_py with venv after installing it" \
            "install python3$want_py and python3-venv by hand, or build the bundle with --python $(py_version python3 2>/dev/null || echo 3.X)"
    elif [ -n "$PYTHON" ]; then
        die 4 "$PYTHON is not a python 3.9+ with the venv module" "pass --python with a usable interpreter"
    elif [ -n "${B_PYTHON:-}" ]; then
        die 4 "this bundle needs python$B_PYTHON with the venv module, which this host lacks" \
            "run with --install-python, install python$B_PYTHON and python3-venv, or build the bundle with --python $(py_version python3 2>/dev/null || echo 3.X)"
    else
        die 4 "no python3 3.9+ with the venv module" "run with --install-python, or install python3 and python3-venv"
    fi
fi
if [ -n "${B_PYTHON:-}" ] && [ "$(py_version "$PYTHON")" != "$B_PYTHON" ]; then
    die 4 "the bundle is for Python $B_PYTHON but $PYTHON is $(py_version "$PYTHON")" \
        "build it with --python $(py_version "$PYTHON"), or pass --python python$B_PYTHON"
fi

# -- the venv --------------------------------------------------------------------------------
installed_version() {
    [ -x "$VENV/bin/python" ] || return 0
    "$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("anywhere-agent"))' 2>/dev/null || true
}

venv_works() {
    [ -x "$VENV/bin/anywhere-agent" ] && "$VENV/bin/anywhere-agent" --help >/dev/null 2>&1
}

CREATED_VENV=0
make_venv() {
    if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import pip' >/dev/null 2>&1; then
        mkdir -p "$PREFIX" || die 8 "cannot create $PREFIX" "check that /opt is writable"
        [ -d "$VENV" ] || CREATED_VENV=1
        "$PYTHON" -m venv --clear "$VENV" </dev/null ||
            die 8 "cannot create the virtual environment $VENV" "check disk space and python3-venv"
    fi
}

# A failed first install leaves nothing behind; a failed upgrade leaves the old venv in place
# (pip installs package by package, so the old one may be mixed: re-run to finish).
abort_install() {
    if [ "$CREATED_VENV" = 1 ]; then rm -rf "$VENV" "$INSTALLED_ID"; rmdir "$PREFIX" 2>/dev/null || true; fi
    die "$@"
}

# pip_from_index SPEC: its own "$@", so the pass-through flags stay as they are.
pip_from_index() {
    spec=$1
    set -- install --quiet --upgrade --disable-pip-version-check
    [ -z "$INDEX_URL" ] || set -- "$@" --index-url "$INDEX_URL"
    [ -z "$EXTRA_INDEX_URL" ] || set -- "$@" --extra-index-url "$EXTRA_INDEX_URL"
    [ -z "$PROXY" ] || set -- "$@" --proxy "$PROXY"
    "$VENV/bin/python" -m pip "$@" "$spec" </dev/null
}

if [ -n "$BUNDLE" ]; then
    current_id=$(cat "$INSTALLED_ID" 2>/dev/null || true)
    if [ "$current_id" = "$B_ID" ] && venv_works && [ -f "$BUNDLE_COPY/manifest.sha256" ]; then
        say "anywhere-agent $B_VERSION from this bundle is already installed in $VENV; nothing to change"
    else
        before=$(installed_version)
        make_venv
        # --isolated: the host's pip configuration (indexes, constraints) must not apply here.
        "$VENV/bin/python" -m pip install --quiet --isolated --no-index --no-cache-dir \
            --disable-pip-version-check --find-links "$BUNDLE/wheels" \
            -r "$BUNDLE/requirements.txt" </dev/null ||
            abort_install 10 "installing the bundle's wheels into $VENV failed" \
                "check that the bundle was built for this host (--arch, --python)"
        # The node's `bundle` package source reads the agents from here on every install run.
        if [ "$BUNDLE" != "$BUNDLE_COPY" ]; then
            rm -rf "$BUNDLE_COPY.new"
            { cp -R "$BUNDLE" "$BUNDLE_COPY.new" && rm -rf "$BUNDLE_COPY" && mv "$BUNDLE_COPY.new" "$BUNDLE_COPY"; } ||
                abort_install 8 "cannot copy the bundle to $BUNDLE_COPY" "free space under $PREFIX"
        fi
        printf '%s\n' "$B_ID" >"$INSTALLED_ID"
        if [ -n "$before" ]; then
            say "upgraded anywhere-agent $before -> $B_VERSION in $VENV (bundle $B_ID)"
        else
            say "installed anywhere-agent $B_VERSION in $VENV (bundle $B_ID)"
        fi
    fi
else
    # Index or mirror: pip honours https_proxy/HTTPS_PROXY and its own configuration; an
    # explicit proxy comes from --proxy, then install's --https-proxy/--http-proxy flags.
    if [ -z "$PROXY" ]; then
        prev=
        for arg in "$@"; do
            case $prev in --https-proxy | --http-proxy) [ -n "$PROXY" ] || PROXY=$arg ;; esac
            case $arg in --https-proxy=* | --http-proxy=*) [ -n "$PROXY" ] || PROXY=${arg#*=} ;; esac
            prev=$arg
        done
        PROXY=${PROXY:-${ANYWHERE_AGENT_HTTPS_PROXY:-${ANYWHERE_AGENT_HTTP_PROXY:-}}}
    fi
    before=$(installed_version)
    if [ -n "$VERSION" ] && [ "$before" = "$VERSION" ] && venv_works; then
        say "anywhere-agent $VERSION is already installed in $VENV; nothing to change"
    else
        spec=anywhere-agent${VERSION:+==$VERSION}
        make_venv
        pip_from_index "$spec" ||
            abort_install 7 "pip could not install $spec from the index" \
                "check --index-url, the proxy (--proxy or https_proxy) and that the mirror has it"
        after=$(installed_version)
        if [ "$before" = "$after" ]; then
            say "anywhere-agent $after is already the newest the index offers; nothing to change"
        elif [ -n "$before" ]; then
            say "upgraded anywhere-agent $before -> $after in $VENV"
        else
            say "installed anywhere-agent $after in $VENV"
        fi
    fi
fi

# -- PATH link -------------------------------------------------------------------------------
if [ "$(readlink "$LINK" 2>/dev/null || true)" != "$VENV/bin/anywhere-agent" ]; then
    mkdir -p "$(dirname "$LINK")"
    ln -sfn "$VENV/bin/anywhere-agent" "$LINK" || die 8 "cannot link $LINK" "check that /usr/local/bin is writable"
    say "linked $LINK -> $VENV/bin/anywhere-agent"
fi

# The systemd units (anywhere-agent.service and the agents' drop-ins) ship inside the wheel;
# `anywhere-agent install` writes them with the configuration they depend on.

# -- hand over -------------------------------------------------------------------------------
if [ "$HANDOVER" = 0 ]; then
    say "anywhere-agent is ready; run \`anywhere-agent install\` next"
    exit 0
fi
if [ -n "$BUNDLE" ]; then
    has_source=0
    for arg in "$@"; do
        case $arg in --package-source | --package-source=*) has_source=1 ;; esac
    done
    if [ "$has_source" = 0 ]; then
        set -- --package-source bundle --bundle-dir "$BUNDLE_COPY" "$@"
    fi
fi
cleanup
WORK=
trap - EXIT
# stdin stays attached: --activation-code-file - reads the code from it.
exec "$VENV/bin/anywhere-agent" install "$@"
