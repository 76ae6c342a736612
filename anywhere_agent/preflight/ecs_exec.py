"""ECS Exec preflight: a CA bundle to copy for the exec agents exists and holds certificates."""

from __future__ import annotations

from anywhere_agent.host import ecs_exec
from anywhere_agent.preflight.context import PreflightContext
from anywhere_agent.preflight.model import CheckResult


def check_ca_bundle(ctx: PreflightContext) -> CheckResult:
    name = "ca_bundle"
    certs_file = ctx.cfg.certs_file
    found = ecs_exec.find_ca_bundle(ctx.host, certs_file)
    if found is None:
        if certs_file:
            return CheckResult(name, "fail", f"certs_file {certs_file} does not exist",
                               "point certs_file (--certs-file) at the host's PEM CA bundle")
        return CheckResult(name, "fail", "no CA bundle at any known location ("
                           + ", ".join(ecs_exec.CA_BUNDLE_CANDIDATES) + ")",
                           "install ca-certificates, or " + ecs_exec.CERTS_FIX)
    if not ecs_exec.is_pem_bundle(ctx.host.read_bytes(found)):
        return CheckResult(name, "fail", f"{found} holds no PEM certificate",
                           "reinstall ca-certificates, or " + ecs_exec.CERTS_FIX)
    return CheckResult(name, "pass", f"{found} (copied for ECS Exec)")
