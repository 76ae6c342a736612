"""The proxy reaches the package manager of every family, set key by key."""

from __future__ import annotations

from typing import Any

from anywhere_agent.host.keyvalue import set_ini_keys
from anywhere_agent.host.platform import detect
from anywhere_agent.install.steps import all_steps

PROXY = {"proxy.https": "http://proxy.corp:3128", "proxy.no_proxy": "10.0.0.0/8"}


def step(name: str) -> Any:
    return next(s for s in all_steps() if s.name == name)


def test_dnf_conf_gets_proxy_in_main_and_keeps_other_keys(node: Any) -> None:
    system, make_ctx, _ = node
    conf = system.root / "etc/dnf/dnf.conf"
    conf.parent.mkdir(parents=True)
    conf.write_text("[main]\ngpgcheck=1\nproxy=http://old:1\n\n[other]\nproxy=keep\n")
    ctx = make_ctx(**PROXY)
    ctx.platform = detect('ID="rhel"\nVERSION_ID="9.3"\n', "x86_64")
    s = step("rpm-proxy")
    assert s.applies(ctx) and not step("apt-proxy").applies(ctx)
    s.apply(ctx, s.check(ctx))
    assert conf.read_text() == ("[main]\ngpgcheck=1\nproxy=http://proxy.corp:3128\n\n"
                                "[other]\nproxy=keep\n")
    assert s.check(ctx) is None


def test_amazon_linux_2_uses_yum_conf(node: Any) -> None:
    _, make_ctx, _ = node
    ctx = make_ctx(**PROXY)
    ctx.platform = detect('ID="amzn"\nVERSION_ID="2"\n', "aarch64")
    delta = step("rpm-proxy").check(ctx)
    assert delta is not None and delta.files[0].path == "/etc/yum.conf"
    assert "proxy=http://proxy.corp:3128" in (delta.files[0].new or "")


def test_suse_sysconfig_proxy_is_enabled_with_quoted_values(node: Any) -> None:
    system, make_ctx, _ = node
    ctx = make_ctx(**PROXY)
    ctx.platform = detect('ID="sles"\nVERSION_ID="15.5"\n', "x86_64")
    s = step("zypper-proxy")
    s.apply(ctx, s.check(ctx))
    text = (system.root / "etc/sysconfig/proxy").read_text()
    assert 'PROXY_ENABLED="yes"' in text and 'HTTPS_PROXY="http://proxy.corp:3128"' in text
    assert 'NO_PROXY="10.0.0.0/8"' in text


def test_no_proxy_configured_leaves_an_operators_dnf_proxy_alone(node: Any) -> None:
    system, make_ctx, _ = node
    conf = system.root / "etc/dnf/dnf.conf"
    conf.parent.mkdir(parents=True)
    conf.write_text("[main]\nproxy=http://theirs:8080\n")
    ctx = make_ctx()
    ctx.platform = detect('ID="rocky"\nVERSION_ID="8.9"\n', "x86_64")
    assert step("rpm-proxy").check(ctx) is None


def test_ini_setter_adds_a_missing_section() -> None:
    assert set_ini_keys("", "main", {"proxy": "http://p:1"}) == "[main]\nproxy=http://p:1\n"
    assert set_ini_keys("[x]\na=1\n", "main", {"proxy": "http://p:1"}) == \
        "[x]\na=1\n\n[main]\nproxy=http://p:1\n"
