"""The air-gapped bundle: build it (`build_bundle`), write and verify its sha256 manifest."""

from anywhere_agent.bundle.manifest import MANIFEST, read_manifest, verify_bundle, write_manifest

__all__ = ["MANIFEST", "read_manifest", "verify_bundle", "write_manifest"]
