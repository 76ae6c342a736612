"""Network preflight checks: an EC2 instance role, and every endpoint the host must reach.

The endpoint list: ssm, ec2messages, ssmmessages and ecs (each honouring its endpoint
override), plus the package source. The ECS agent's ecs-a-* (ACS) and ecs-t-* (TCS)
hosts are handed out at run time by DiscoverPollEndpoint, so they cannot be named before
the host registers: the ecs result says so and the fix names them for firewall rules.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from urllib.parse import urlsplit

from anywhere_agent.aws.skew import CLOCK_FIX
from anywhere_agent.config import Config
from anywhere_agent.preflight.context import PreflightContext
from anywhere_agent.preflight.model import CheckResult
from anywhere_agent.preflight.network import (
    Probe,
    endpoint_clock,
    probe_instance_role,
    probe_url,
    proxy_for,
)

ENDPOINT_SERVICES = ("ssm", "ec2messages", "ssmmessages", "ecs")
# Same file name as install/sources.py reads from a bundle directory.
BUNDLE_MANIFEST = "manifest.sha256"
_NO_NETWORK = "skipped: network checks are off"
_MAX_WORKERS = 8


@dataclass(frozen=True)
class Target:
    """One thing to probe: the check name, its URL, and the setting that overrides it."""

    name: str
    url: str
    setting: str
    note: str = ""


def check_instance_role(ctx: PreflightContext) -> CheckResult:
    name = "instance_role"
    if not ctx.network:
        return CheckResult(name, "skip", _NO_NETWORK)
    found = probe_instance_role(ctx.connect)
    if found.roles:
        return CheckResult(
            name, "fail", f"an EC2 instance role is attached ({', '.join(found.roles)})",
            "detach the instance profile (aws ec2 disassociate-iam-instance-profile): the "
            "agents would use it instead of the SSM role (aws/amazon-ecs-agent#3604)",
        )
    if found.reachable and "no IAM role" not in found.detail:
        return CheckResult(name, "warn", found.detail,
                           "make sure no instance metadata service vends credentials here")
    return CheckResult(name, "pass", found.detail)


def _s3_suffix(cfg: Config) -> str:
    return "amazonaws.com.cn" if cfg.region.startswith("cn-") else "amazonaws.com"


def endpoint_targets(cfg: Config) -> list[Target]:
    targets = []
    for service in ENDPOINT_SERVICES:
        note = ""
        if service == "ecs":
            note = ("; ecs-a-*/ecs-t-* endpoints are discovered at run time and "
                    "not probed")
        targets.append(Target(f"endpoint_{service}", cfg.effective_endpoint(service),
                              f"AWS_ENDPOINT_URL_{service.upper()}", note))
    return targets


def package_targets(cfg: Config) -> list[Target]:
    """Hosts the `aws` package source downloads from (the layout install/sources.py uses)."""
    if cfg.package_base_url:
        return [Target("package_mirror", cfg.package_base_url, "package_base_url")]
    region, suffix = cfg.region, _s3_suffix(cfg)
    return [
        Target("package_ssm_agent", f"https://amazon-ssm-{region}.s3.{region}.{suffix}",
               "package_base_url"),
        Target("package_ecs_init", f"https://amazon-ecs-agent-{region}.s3.{region}.{suffix}",
               "package_base_url"),
    ]


def _fix(target: Target, probe: Probe, cfg: Config) -> str:
    host = urlsplit(target.url).hostname or target.url
    port = urlsplit(target.url).port or (443 if target.url.startswith("https") else 80)
    if target.name == "endpoint_ecs":
        extra = (f"; also allow ecs-a-*.{cfg.region}.{_s3_suffix(cfg)} and "
                 f"ecs-t-*.{cfg.region}.{_s3_suffix(cfg)}")
    else:
        extra = ""
    if probe.via != "direct":
        how = (f"check the proxy ({probe.via.removeprefix('proxy ')}) is up and allows "
               f"{host}:{port}, or add {host} to proxy.no_proxy to go direct")
    elif probe.reason == "dns":
        how = f"fix DNS for {host} (/etc/resolv.conf) or set proxy.https"
    else:
        how = (f"open outbound TCP to {host}:{port} in the firewall, or set proxy.https "
               "(and proxy.no_proxy)")
    return f"{how}, or point {target.setting} at a reachable endpoint{extra}"


def _result(target: Target, probe: Probe, cfg: Config) -> CheckResult:
    if probe.ok:
        return CheckResult(target.name, "pass", f"{probe.detail}{target.note}")
    return CheckResult(target.name, "fail", f"{target.url} unreachable: {probe.detail}",
                       _fix(target, probe, cfg))


def _probe_all(ctx: PreflightContext, targets: list[Target]) -> list[CheckResult]:
    """Probe concurrently: the wall time is one timeout, not one per endpoint."""
    if not targets:
        return []
    with ThreadPoolExecutor(max_workers=min(_MAX_WORKERS, len(targets))) as pool:
        probes = list(pool.map(
            lambda t: probe_url(t.url, ctx.cfg.proxy, ctx.connect, ctx.timeout), targets))
    return [_result(t, p, ctx.cfg) for t, p in zip(targets, probes)]


def _local_package_result(ctx: PreflightContext) -> CheckResult | None:
    """The package source check when it needs no network (repo, bundle), else None."""
    if ctx.cfg.package_source == "repo":
        return CheckResult("package_source", "skip",
                           "package_source = repo: packages come from the host's configured "
                           "repositories (not probed)")
    if ctx.cfg.package_source == "bundle":
        return _check_bundle(ctx)
    return None


def check_reachability(ctx: PreflightContext) -> list[CheckResult]:
    """Endpoints, then the package source; all network probes share one concurrent pool."""
    cfg = ctx.cfg
    local = _local_package_result(ctx)
    targets = endpoint_targets(cfg) + (package_targets(cfg) if local is None else [])
    if not ctx.network:
        results = [CheckResult(t.name, "skip", _NO_NETWORK) for t in targets]
        return results + ([local] if local else [])
    by_name: dict[str, CheckResult] = {}
    to_probe: list[Target] = []
    for target in targets:
        service = target.name.removeprefix("endpoint_")
        if not cfg.region and not (cfg.endpoint(service) if service in ENDPOINT_SERVICES
                                   else cfg.package_base_url):
            by_name[target.name] = CheckResult(
                target.name, "fail", "no region configured, so nothing to probe",
                "set region in agent.toml, ANYWHERE_AGENT_REGION or --region")
        else:
            to_probe.append(target)
    for result in _probe_all(ctx, to_probe):
        by_name[result.name] = result
    return [by_name[t.name] for t in targets] + ([local] if local else [])


def _check_bundle(ctx: PreflightContext) -> CheckResult:
    name, bundle = "package_bundle", ctx.cfg.bundle_dir
    fix = "point bundle_dir at a directory made by `anywhere-agent bundle` (with its manifest)"
    if not ctx.host.path(bundle).is_dir():
        return CheckResult(name, "fail", f"bundle_dir {bundle} is not a directory", fix)
    text = ctx.host.read_text(f"{bundle}/{BUNDLE_MANIFEST}")
    entries = [ln.split(None, 1)[1].lstrip("*").strip() for ln in (text or "").splitlines()
               if len(ln.split(None, 1)) == 2]
    if not entries:
        return CheckResult(name, "fail", f"{bundle} has no {BUNDLE_MANIFEST} (or it is empty)",
                           fix)
    missing = [e for e in entries if not ctx.host.exists(f"{bundle}/{e}")]
    if missing:
        return CheckResult(name, "fail",
                           f"{bundle}: {len(missing)} file(s) in {BUNDLE_MANIFEST} missing, "
                           f"first {missing[0]}", "copy the whole bundle directory again")
    return CheckResult(name, "pass", f"{bundle} has {BUNDLE_MANIFEST} with "
                                     f"{len(entries)} file(s)")


# AWS's SigV4 window: a request signed further than this from AWS's clock is refused.
SKEW_LIMIT_SECONDS = 300.0


def check_clock_skew(ctx: PreflightContext) -> CheckResult:
    """This host's clock against the SSM endpoint's (its HTTP Date), before AWS refuses."""
    name = "clock_skew"
    if not ctx.network:
        return CheckResult(name, "skip", _NO_NETWORK)
    if not ctx.cfg.region and not ctx.cfg.endpoint("ssm"):
        return CheckResult(name, "skip", "no region or ssm endpoint configured")
    url = ctx.cfg.effective_endpoint("ssm")
    if proxy_for(url, ctx.cfg.proxy):
        return CheckResult(name, "skip", "the ssm endpoint is behind the proxy: its clock is "
                                         "not measured (time_sync covers this host's)")
    theirs = endpoint_clock(url, ctx.connect, ctx.timeout)
    if theirs is None:
        return CheckResult(name, "skip", f"could not read the clock of {urlsplit(url).netloc} "
                                         "(no Date in its answer)")
    off = ctx.now() - theirs
    side = "ahead of" if off > 0 else "behind"
    where = urlsplit(url).netloc
    if abs(off) > SKEW_LIMIT_SECONDS:
        return CheckResult(name, "fail", f"this host's clock is {abs(off) / 60:.0f} min {side} "
                                         f"{where}'s: AWS refuses every signed request "
                                         "(Signature expired)", CLOCK_FIX)
    return CheckResult(name, "pass", f"clock within {abs(off):.0f} s of {where}'s")
