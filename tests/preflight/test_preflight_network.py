"""Reachability and IMDS checks against loopback servers, direct and through a proxy."""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from typing import Any

import pytest

from anywhere_agent.config import Config, Proxy
from anywhere_agent.preflight import CheckResult, PreflightReport
from anywhere_agent.preflight.network import bypasses_proxy, proxy_for
from anywhere_agent.preflight.reach import package_targets

Run = Callable[..., PreflightReport]
Pick = Callable[[PreflightReport, str], CheckResult]
MakeConfig = Callable[..., Config]

ENDPOINTS = ("endpoint_ssm", "endpoint_ec2messages", "endpoint_ssmmessages", "endpoint_ecs")
PACKAGES = ("package_ssm_agent", "package_ecs_init")


def statuses(report: PreflightReport, names: Any) -> dict[str, str]:
    return {c.name: c.status for c in report.checks if c.name in names}


def test_every_endpoint_and_package_host_passes_when_reachable_directly(
        preflight: Run, pick: Pick, reachable: Any) -> None:
    report = preflight()
    assert set(statuses(report, ENDPOINTS + PACKAGES).values()) == {"pass"}
    assert ("ssm.us-east-1.amazonaws.com", 443) in reachable.calls
    assert ("amazon-ecs-agent-us-east-1.s3.us-east-1.amazonaws.com", 443) in reachable.calls
    assert "ecs-a-*/ecs-t-*" in pick(report, "endpoint_ecs").summary


def test_an_endpoint_that_refuses_fails_with_a_firewall_fix(
        preflight: Run, pick: Pick, reachable: Any, closed_port: int) -> None:
    reachable.add("ssmmessages.us-east-1.amazonaws.com", 443, closed_port)
    report = preflight()
    result = pick(report, "endpoint_ssmmessages")
    assert result.status == "fail" and "refused" in result.summary
    assert "firewall" in result.fix and "proxy.https" in result.fix
    assert "AWS_ENDPOINT_URL_SSMMESSAGES" in result.fix
    assert pick(report, "endpoint_ssm").status == "pass"


def test_an_unreachable_ecs_endpoint_names_the_run_time_hosts_in_its_fix(
        preflight: Run, pick: Pick, names: Any) -> None:
    result = pick(preflight(), "endpoint_ecs")
    assert result.status == "fail"
    assert "ecs-a-*.us-east-1.amazonaws.com" in result.fix
    assert "ecs-t-*.us-east-1.amazonaws.com" in result.fix


def test_an_unresolvable_endpoint_fails_with_a_dns_fix(
        preflight: Run, pick: Pick, names: Any) -> None:
    result = pick(preflight(), "endpoint_ssm")
    assert result.status == "fail" and "cannot resolve" in result.summary
    assert "DNS" in result.fix


def test_endpoint_overrides_are_probed_instead_of_the_public_endpoint(
        preflight: Run, pick: Pick, make_config: MakeConfig, reachable: Any,
        open_port: int) -> None:
    reachable.add("cp.lab.test", 4566, open_port)
    cfg = make_config(endpoints={"ssm": "http://cp.lab.test:4566"})
    result = pick(preflight(cfg), "endpoint_ssm")
    assert result.status == "pass" and "cp.lab.test:4566" in result.summary
    assert ("ssm.us-east-1.amazonaws.com", 443) not in reachable.calls


def test_https_endpoints_go_through_the_proxy_with_connect_when_one_is_set(
        preflight: Run, make_config: MakeConfig, reachable: Any, proxy: Any) -> None:
    url, log = proxy
    report = preflight(make_config(proxy=Proxy(https=url)))
    assert set(statuses(report, ENDPOINTS + PACKAGES).values()) == {"pass"}
    assert "CONNECT ssm.us-east-1.amazonaws.com:443 HTTP/1.1" in log.request_lines
    assert len(log.request_lines) == len(ENDPOINTS + PACKAGES)
    # preflight itself connected only to the proxy (and to IMDS, which is never proxied)
    assert reachable.hosts_called() == {"proxy.corp.test", "169.254.169.254"}


def test_http_endpoints_go_through_the_proxy_with_a_plain_get(
        preflight: Run, pick: Pick, make_config: MakeConfig, reachable: Any, proxy: Any, open_port:
        int) -> None:
    url, log = proxy
    reachable.add("cp.lab.test", 4566, open_port)
    cfg = make_config(endpoints={"ssm": "http://cp.lab.test:4566"}, proxy=Proxy(http=url))
    result = pick(preflight(cfg), "endpoint_ssm")
    assert result.status == "pass" and "through proxy proxy.corp.test:3128" in result.summary
    assert log.request_lines == ["GET http://cp.lab.test:4566/ HTTP/1.1"]


def test_no_proxy_sends_matching_endpoints_direct(
        preflight: Run, pick: Pick, make_config: MakeConfig, reachable: Any, proxy: Any) -> None:
    url, log = proxy
    no_proxy = "ssm.us-east-1.amazonaws.com,.s3.us-east-1.amazonaws.com"
    cfg = make_config(proxy=Proxy(https=url, no_proxy=no_proxy))
    report = preflight(cfg)
    assert set(statuses(report, ENDPOINTS + PACKAGES).values()) == {"pass"}
    assert "direct" not in pick(report, "endpoint_ssm").summary  # the summary names no proxy
    assert "proxy" not in pick(report, "endpoint_ssm").summary
    assert "proxy" not in pick(report, "package_ecs_init").summary
    assert ("ssm.us-east-1.amazonaws.com", 443) in reachable.calls
    proxied = sorted(line.split()[1] for line in log.request_lines)
    assert proxied == ["ec2messages.us-east-1.amazonaws.com:443",
                       "ecs.us-east-1.amazonaws.com:443",
                       "ssmmessages.us-east-1.amazonaws.com:443"]


def test_a_proxy_that_cannot_reach_the_endpoint_fails_with_a_proxy_fix(
        preflight: Run, pick: Pick, make_config: MakeConfig, names: Any, proxy: Any) -> None:
    url, _ = proxy  # names knows only the proxy: it answers 502 for every endpoint
    result = pick(preflight(make_config(proxy=Proxy(https=url))), "endpoint_ssm")
    assert result.status == "fail" and "answered 502" in result.summary
    assert "proxy (proxy.corp.test:3128)" in result.fix and "no_proxy" in result.fix


def test_a_proxy_that_refuses_fails_naming_the_proxy(
        preflight: Run, pick: Pick, make_config: MakeConfig, reachable: Any,
        closed_port: int) -> None:
    reachable.add("proxy.corp.test", 3128, closed_port)
    cfg = make_config(proxy=Proxy(https="http://proxy.corp.test:3128"))
    result = pick(preflight(cfg), "endpoint_ecs")
    assert result.status == "fail"
    assert result.summary.endswith("proxy proxy.corp.test:3128 refused the connection")


def test_proxy_credentials_are_sent_but_never_printed(
        preflight: Run, pick: Pick, make_config: MakeConfig, reachable: Any, proxy: Any) -> None:
    url, log = proxy
    cfg = make_config(proxy=Proxy(https=url.replace("//", "//bob:pa%40ss@")))
    report = preflight(cfg)
    assert pick(report, "endpoint_ssm").status == "pass"
    assert set(log.auth) == {"Basic " + base64.b64encode(b"bob:pa@ss").decode()}
    assert "pa@ss" not in report.render_text() and "pa%40ss" not in report.render_text()


def test_a_silent_proxy_times_out_within_the_bound_with_probes_run_concurrently(
        preflight: Run, pick: Pick, make_config: MakeConfig, reachable: Any,
        silent_port: int) -> None:
    reachable.add("proxy.corp.test", 3128, silent_port)
    cfg = make_config(proxy=Proxy(https="http://proxy.corp.test:3128"))
    start = time.monotonic()
    report = preflight(cfg, timeout=0.5)
    elapsed = time.monotonic() - start
    assert set(statuses(report, ENDPOINTS + PACKAGES).values()) == {"fail"}
    assert "no answer from proxy proxy.corp.test:3128 in time" in pick(
        report, "endpoint_ssm").summary
    # six probes of 0.5 s would take 3 s one after another, 1 s in two rounds
    assert 0.5 <= elapsed < 0.9


def test_network_off_skips_probes_and_never_connects(preflight: Run, reachable: Any) -> None:
    report = preflight(network=False)
    assert statuses(report, ENDPOINTS + PACKAGES + ("instance_role",)) == {
        name: "skip" for name in ENDPOINTS + PACKAGES + ("instance_role",)}
    assert reachable.calls == []


def test_without_a_region_the_endpoints_fail_with_a_region_fix(
        preflight: Run, pick: Pick, make_config: MakeConfig, reachable: Any) -> None:
    report = preflight(make_config(region=""))
    result = pick(report, "endpoint_ssm")
    assert result.status == "fail" and "region" in result.fix
    assert pick(report, "package_ssm_agent").status == "fail"
    assert reachable.hosts_called() <= {"169.254.169.254"}


def test_a_package_mirror_is_probed_instead_of_the_aws_buckets(
        preflight: Run, pick: Pick, make_config: MakeConfig, reachable: Any,
        closed_port: int) -> None:
    reachable.add("mirror.corp.test", 8080, closed_port)
    cfg = make_config(package_base_url="http://mirror.corp.test:8080/ecs")
    report = preflight(cfg)
    result = pick(report, "package_mirror")
    assert result.status == "fail" and "mirror.corp.test:8080" in result.summary
    assert "package_base_url" in result.fix
    assert not [c for c in report.checks if c.name in PACKAGES]


def test_package_hosts_follow_the_region_and_its_partition(make_config: MakeConfig) -> None:
    hosts = [t.url for t in package_targets(make_config(region="cn-north-1"))]
    assert hosts == ["https://amazon-ssm-cn-north-1.s3.cn-north-1.amazonaws.com.cn",
                     "https://amazon-ecs-agent-cn-north-1.s3.cn-north-1.amazonaws.com.cn"]


def test_repo_package_source_is_skipped_with_a_note(
        preflight: Run, pick: Pick, make_config: MakeConfig) -> None:
    result = pick(preflight(make_config(package_source="repo")), "package_source")
    assert result.status == "skip" and "configured repositories" in result.summary


def test_a_bundle_with_its_manifest_and_files_passes(
        preflight: Run, pick: Pick, make_config: MakeConfig, node: Any) -> None:
    node.write("/opt/bundle/manifest.sha256", "ab12  debs/a.deb\ncd34 *debs/b.deb\n")
    node.write("/opt/bundle/debs/a.deb", "a")
    node.write("/opt/bundle/debs/b.deb", "b")
    cfg = make_config(package_source="bundle", bundle_dir="/opt/bundle")
    result = pick(preflight(cfg, network=False), "package_bundle")
    assert result.status == "pass" and "2 file(s)" in result.summary


@pytest.mark.parametrize(("files", "words"), [
    ({}, "is not a directory"),
    ({"/opt/bundle/README": "x"}, "has no manifest.sha256"),
    ({"/opt/bundle/manifest.sha256": "ab12  debs/a.deb\n"}, "first debs/a.deb"),
])
def test_a_bundle_without_a_manifest_or_files_fails(
        preflight: Run, pick: Pick, make_config: MakeConfig, node: Any, files: dict[str, str],
        words: str) -> None:
    for path, text in files.items():
        node.write(path, text)
    cfg = make_config(package_source="bundle", bundle_dir="/opt/bundle")
    result = pick(preflight(cfg), "package_bundle")
    assert result.status == "fail" and words in result.summary and result.fix


def test_an_ec2_instance_role_fails_citing_the_known_issue(
        preflight: Run, pick: Pick, imds: Any) -> None:
    imds.roles = ("ecsInstanceRole",)
    result = pick(preflight(), "instance_role")
    assert result.status == "fail" and "ecsInstanceRole" in result.summary
    assert "#3604" in result.fix
    # IMDSv2: a token first, then the role list with that token
    assert imds.requests[0][0].startswith("PUT /latest/api/token")
    assert imds.requests[1][1]["x-aws-ec2-metadata-token"] == "TOKEN-abc"


def test_instance_metadata_without_a_role_passes(preflight: Run, pick: Pick, imds: Any) -> None:
    result = pick(preflight(), "instance_role")
    assert result.status == "pass" and "no IAM role" in result.summary


def test_no_instance_metadata_passes(
        preflight: Run, pick: Pick, names: Any, closed_port: int) -> None:
    names.add("169.254.169.254", 80, closed_port)
    result = pick(preflight(), "instance_role")
    assert result.status == "pass" and "nothing answers" in result.summary


def test_a_silent_metadata_address_warns_within_its_short_bound(
        preflight: Run, pick: Pick, names: Any, silent_port: int) -> None:
    names.add("169.254.169.254", 80, silent_port)
    start = time.monotonic()
    result = pick(preflight(), "instance_role")
    assert time.monotonic() - start < 1.0  # the IMDS bound is 0.5 s, not the 1 s probe timeout
    assert result.status == "warn" and "did not answer" in result.summary


def test_the_imds_probe_ignores_the_proxy(
        preflight: Run, pick: Pick, make_config: MakeConfig, imds: Any, proxy: Any) -> None:
    url, log = proxy
    imds.roles = ("r",)
    result = pick(preflight(make_config(proxy=Proxy(http=url, https=url))), "instance_role")
    assert result.status == "fail"
    assert not [line for line in log.request_lines if "169.254.169.254" in line]


@pytest.mark.parametrize(("host", "port", "no_proxy", "direct"), [
    ("ssm.us-east-1.amazonaws.com", 443, "", False),
    ("ssm.us-east-1.amazonaws.com", 443, "*", True),
    ("ssm.us-east-1.amazonaws.com", 443, "amazonaws.com", True),
    ("amazonaws.com", 443, ".amazonaws.com", False),
    ("ssm.us-east-1.amazonaws.com", 443, ".amazonaws.com", True),
    ("ssm.us-east-1.amazonaws.com", 443, "*.amazonaws.com", True),
    ("ssm.us-east-1.amazonaws.com", 443, "notamazonaws.com", False),
    ("ssm.us-east-1.amazonaws.com", 443, "ssm.us-east-1.amazonaws.com:8443", False),
    ("ssm.us-east-1.amazonaws.com", 443, " x.test , SSM.us-east-1.amazonaws.com:443", True),
    ("10.213.7.1", 4566, "10.213.0.0/16", True),
    ("10.214.7.1", 4566, "10.213.0.0/16", False),
    ("10.213.7.1", 4566, "10.213.7.1", True),
    ("127.0.0.1", 4566, "", True),
    ("localhost", 4566, "", True),
    ("::1", 4566, "", True),
])
def test_no_proxy_follows_the_go_agents_rules(
        host: str, port: int, no_proxy: str, direct: bool) -> None:
    assert bypasses_proxy(host, port, no_proxy) is direct


def test_each_scheme_uses_its_own_proxy_variable_only() -> None:
    only_http = Proxy(http="http://p:3128")
    assert proxy_for("http://cp.lab.test:4566", only_http) == "http://p:3128"
    assert proxy_for("https://ssm.us-east-1.amazonaws.com", only_http) == ""
    only_https = Proxy(https="http://p:3128")
    assert proxy_for("https://ssm.us-east-1.amazonaws.com", only_https) == "http://p:3128"
    assert proxy_for("http://cp.lab.test:4566", only_https) == ""
