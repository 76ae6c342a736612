"""`manifest.sha256`: sha256sum-format lines covering every file of a bundle, and its check."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path, PurePosixPath

from anywhere_agent.errors import PackageError

# The node's `bundle` package source (install/sources.py) reads the same name and format.
MANIFEST = "manifest.sha256"
_FIX = "copy the bundle again from a trusted build"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def bundle_files(bundle: Path) -> list[str]:
    """Relative POSIX paths of every non-directory entry below `bundle` except the manifest."""
    out: list[str] = []
    for dirpath, dirnames, filenames in os.walk(bundle):
        dirnames.sort()
        for name in filenames + [d for d in dirnames if (Path(dirpath) / d).is_symlink()]:
            rel = (Path(dirpath) / name).relative_to(bundle).as_posix()
            if rel != MANIFEST:
                out.append(rel)
    return sorted(out)


def render_manifest(entries: dict[str, str]) -> str:
    """`<sha256>  <relative path>` lines, sorted by path (what `sha256sum` prints)."""
    return "".join(f"{digest}  {rel}\n" for rel, digest in sorted(entries.items()))


def write_manifest(bundle: Path) -> Path:
    """Hash every file below `bundle` into `bundle/manifest.sha256`; returns its path."""
    for rel in bundle_files(bundle):
        if "\n" in rel or "\\" in rel:
            raise PackageError(f"bundle file name {rel!r} cannot be listed in {MANIFEST}",
                               "rename it (no newlines or backslashes)")
        if (bundle / rel).is_symlink():
            raise PackageError(f"bundle file {rel} is a symlink", "copy the file in instead")
    entries = {rel: sha256_file(bundle / rel) for rel in bundle_files(bundle)}
    path = bundle / MANIFEST
    path.write_text(render_manifest(entries), encoding="utf-8")
    return path


def _safe_rel(rel: str) -> bool:
    parts = PurePosixPath(rel).parts
    return bool(parts) and not rel.startswith("/") and ".." not in parts and "." not in parts


def read_manifest(text: str) -> dict[str, str]:
    """relative path -> sha256; a malformed line or a path leaving the bundle is refused."""
    entries: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        digest, sep, rest = line.partition(" ")
        rel = rest[1:] if rest[:1] in (" ", "*") else rest
        if (not sep or len(digest) != 64 or not rel
                or any(c not in "0123456789abcdef" for c in digest)):
            raise PackageError(f"bundle {MANIFEST} has a malformed line: {line[:120]}", _FIX)
        if not _safe_rel(rel):
            raise PackageError(f"bundle {MANIFEST} names a path outside the bundle: {rel}", _FIX)
        entries[rel] = digest
    if not entries:
        raise PackageError(f"bundle {MANIFEST} lists no files", "build the bundle again")
    return entries


def verify_bundle(bundle: Path) -> dict[str, str]:
    """Check every listed file's sha256 and that nothing unlisted is present.

    Raises PackageError naming the first bad file (one line); returns the manifest.
    """
    path = bundle / MANIFEST
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PackageError(f"bundle {bundle} has no {MANIFEST}",
                           "build it with `anywhere-agent bundle` and copy it whole") from None
    entries = read_manifest(text)
    entries.pop(MANIFEST, None)
    for rel, digest in sorted(entries.items()):
        target = bundle / rel
        if target.is_symlink() or not target.is_file():
            raise PackageError(f"bundle file {rel} is missing", _FIX)
        if sha256_file(target) != digest:
            raise PackageError(f"bundle file {rel} does not match its checksum in {MANIFEST}",
                               _FIX + "; it may have been tampered with")
    for rel in bundle_files(bundle):
        if rel not in entries:
            raise PackageError(f"bundle file {rel} is not listed in {MANIFEST}",
                               "remove it, or " + _FIX)
    return entries
