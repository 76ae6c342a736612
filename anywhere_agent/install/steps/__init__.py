"""Install steps: each answers "already satisfied?" (a Delta or None) and knows how to apply.

`check` only reads (files, package database, unit states, one read-only cloud call), so the plan
and `--dry-run` come from the same code that decides what apply does. `all_steps` is the order.
"""

from __future__ import annotations

from anywhere_agent.install import layout
from anywhere_agent.install.steps.base import (
    Delta,
    FileChange,
    Step,
    _docker_managed,
    _is_deb,
    _is_rpm,
    _is_suse,
    secret_mode,
)
from anywhere_agent.install.steps.credentials import CredentialsStep, cluster_exists
from anywhere_agent.install.steps.files import (
    FileStep,
    _agent_toml,
    _apt_proxy,
    _ecs_config,
    _ecs_proxy_env,
    _ecs_var_config,
    _proxy_dropin_for,
    _proxy_env,
    _rpm_conf,
    _rpm_proxy,
    _ssm_config,
    _unit,
    _zypper_proxy,
)
from anywhere_agent.install.steps.packages import DockerStep, PackageStep
from anywhere_agent.install.steps.registration import (
    RegistrationStep,
    central_registration,
    deregister_own_registration,
)
from anywhere_agent.install.steps.services import ClusterMoveStep, ServiceStep
from anywhere_agent.install.steps.verify import VerifyJoinStep

__all__ = [
    "ClusterMoveStep", "CredentialsStep", "Delta", "DockerStep", "FileChange", "FileStep",
    "PackageStep", "RegistrationStep", "ServiceStep", "Step", "VerifyJoinStep", "all_steps",
    "central_registration", "cluster_exists", "deregister_own_registration", "secret_mode",
]


def all_steps() -> list[Step]:
    """Every step in order; `applies` drops those the config does not need."""
    ssm, ecs, docker, agent = layout.SSM_UNIT, layout.ECS_UNIT, layout.DOCKER_UNIT, \
        layout.AGENT_UNIT
    return [
        FileStep("agent-config", "effective agent.toml", "/etc/anywhere-agent/agent.toml",
                 _agent_toml, mode=0o600, readers=(agent,)),
        FileStep("apt-proxy", "proxy for apt", layout.APT_PROXY_CONF, _apt_proxy,
                 mode=secret_mode, when=_is_deb),
        FileStep("rpm-proxy", "proxy for dnf/yum", _rpm_conf, _rpm_proxy, mode=secret_mode,
                 when=_is_rpm),
        FileStep("zypper-proxy", "proxy for zypper", "/etc/sysconfig/proxy", _zypper_proxy,
                 mode=secret_mode, when=_is_suse),
        PackageStep("ssm-agent-package", layout.SSM_PACKAGE),
        FileStep("ssm-agent-config", "SSM agent endpoints", layout.SSM_CONFIG, _ssm_config,
                 mode=secret_mode, readers=(ssm,)),
        FileStep("ssm-agent-proxy-env", "proxy values for the SSM agent",
                 layout.proxy_env(ssm), _proxy_env, mode=0o600, readers=(ssm,)),
        FileStep("ssm-agent-proxy", "proxy for the SSM agent",
                 layout.dropin(ssm, layout.PROXY_DROPIN), _proxy_dropin_for(ssm), mode=0o600,
                 readers=(ssm,), unit_file=True),
        FileStep("ssm-agent-restart-policy", "restart policy for the SSM agent",
                 layout.dropin(ssm, layout.RESTART_DROPIN),
                 _unit(f"{ssm}.service.d/{layout.RESTART_DROPIN}"), readers=(ssm,), unit_file=True),
        RegistrationStep(),
        ServiceStep("ssm-agent-service", ssm),
        CredentialsStep(),
        DockerStep(),
        FileStep("docker-proxy-env", "proxy values for Docker", layout.proxy_env(docker),
                 _proxy_env, mode=0o600, readers=(docker,), when=_docker_managed),
        FileStep("docker-proxy", "proxy for Docker", layout.dropin(docker, layout.PROXY_DROPIN),
                 _proxy_dropin_for(docker), mode=0o600, readers=(docker,), unit_file=True,
                 when=_docker_managed),
        ServiceStep("docker-service", docker, when=_docker_managed),
        PackageStep("ecs-init-package", layout.ECS_PACKAGE),
        ClusterMoveStep(),
        FileStep("ecs-config", "ECS agent config", layout.ECS_CONFIG, _ecs_config,
                 mode=secret_mode, readers=(ecs,)),
        FileStep("ecs-var-config", "ECS external-instance config", layout.ECS_VAR_CONFIG,
                 _ecs_var_config, mode=secret_mode, readers=(ecs,)),
        FileStep("ecs-proxy-env", "proxy values for the ECS agent", layout.proxy_env(ecs),
                 _ecs_proxy_env, mode=0o600, readers=(ecs,)),
        FileStep("ecs-proxy", "proxy for the ECS agent", layout.dropin(ecs, layout.PROXY_DROPIN),
                 _proxy_dropin_for(ecs), mode=0o600, readers=(ecs,), unit_file=True),
        FileStep("ecs-restart-policy", "restart policy for the ECS agent",
                 layout.dropin(ecs, layout.RESTART_DROPIN),
                 _unit(f"{ecs}.service.d/{layout.RESTART_DROPIN}"), readers=(ecs,), unit_file=True),
        FileStep("supervisor-unit", "anywhere-agent supervisor unit", layout.AGENT_UNIT_PATH,
                 _unit("anywhere-agent.service"), readers=(agent,), unit_file=True),
        ServiceStep("ecs-service", ecs),
        ServiceStep("supervisor-service", agent),
        VerifyJoinStep(),
    ]
