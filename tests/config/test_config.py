"""agent.toml < environment < flags, validated once with one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from anywhere_agent.config import load_config, render_toml
from anywhere_agent.errors import ConfigError, ExitCode


def write(root: Path, text: str) -> None:
    path = root / "etc/anywhere-agent/agent.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_flags_beat_environment_which_beats_the_file(tmp_path: Path) -> None:
    write(tmp_path, 'region = "eu-west-1"\ncluster = "file"\ndocker_source = "none"\n')
    cfg = load_config(tmp_path, {"ANYWHERE_AGENT_CLUSTER": "env", "AWS_REGION": "us-west-2"},
                      {"cluster": "flag"})
    assert cfg.cluster == "flag"
    assert cfg.region == "us-west-2"
    assert cfg.docker_source == "none"


def test_our_region_variable_beats_the_aws_ones(tmp_path: Path) -> None:
    cfg = load_config(tmp_path, {"ANYWHERE_AGENT_REGION": "eu-central-1",
                                 "AWS_REGION": "us-west-2", "AWS_DEFAULT_REGION": "us-east-2"})
    assert cfg.region == "eu-central-1"


def test_endpoint_overrides_follow_botocore_conventions(tmp_path: Path) -> None:
    write(tmp_path, '[endpoints]\necs = "http://10.0.0.1:4566"\n')
    cfg = load_config(tmp_path, {"AWS_ENDPOINT_URL": "http://default:1",
                                 "AWS_ENDPOINT_URL_SSM": "http://ssm:2"})
    assert cfg.endpoint("ssm") == "http://ssm:2"
    assert cfg.endpoint("ecs") == "http://10.0.0.1:4566"
    assert cfg.endpoint("ec2messages") == "http://default:1"


def test_sections_attributes_and_tags_are_typed(tmp_path: Path) -> None:
    write(tmp_path, '[proxy]\nhttp = "http://proxy:3128"\nno_proxy = "10.0.0.0/8"\n'
                    '[ecs.attributes]\nrack = "r12"\n[ecs.tags]\nteam = "ops"\n'
                    '[supervise]\ninterval_seconds = 5\n[reporting]\ncloudwatch = true\n')
    cfg = load_config(tmp_path, {})
    assert cfg.proxy.enabled and cfg.proxy.environment()["HTTP_PROXY"] == "http://proxy:3128"
    assert dict(cfg.ecs_attributes) == {"rack": "r12"}
    assert dict(cfg.ecs_tags) == {"team": "ops"}
    assert cfg.supervise.interval_seconds == 5.0
    assert cfg.reporting.cloudwatch is True


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ('region = "us-east-1"\nregoin = "x"\n', "regoin is not a known key"),
        ('docker_source = "dockr"\n', "docker_source must be one of"),
        ('region = "useast1"\n', "is not an AWS region name"),
        ('[supervise]\ninterval_seconds = "fast"\n', "must be a number"),
        ('region = "us-east-1\n', "is not valid TOML"),
        ('package_source = "bundle"\n', "bundle_dir is required"),
        ('[proxy]\nhttp = "proxy:3128"\n', "must be a URL"),
        ('activation_id = "not-a-uuid"\n', "is not an activation ID"),
        ('[endpoints]\nsmm = "http://x"\n', "names an unknown service"),
    ],
)
def test_malformed_config_is_one_line_with_a_fix(tmp_path: Path, text: str, needle: str) -> None:
    write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_config(tmp_path, {})
    message = str(err.value)
    assert needle in message
    assert "\n" not in message and "fix:" in message
    assert err.value.exit_code == ExitCode.CONFIG


def test_rendered_config_reads_back_to_the_same_config(tmp_path: Path) -> None:
    cfg = load_config(tmp_path, {}, {"region": "us-east-1", "cluster": "prod",
                                     "ecs_attributes": "rack=r1,row=2", "proxy.http":
                                     "http://p:3128", "endpoints.ssm": "http://10.1.1.1:4566"})
    write(tmp_path, render_toml(cfg))
    assert load_config(tmp_path, {}) == cfg
