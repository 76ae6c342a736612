"""Install steps: each answers "already satisfied?" (a Delta or None) and knows how to apply.

`check` only reads (files, package database, unit states, one read-only cloud call), so the plan
and `--dry-run` come from the same code that decides what apply does. `all_steps` is the order.
"""

from __future__ import annotations

from anywhere_agent.host import agent_files
from anywhere_agent.install.steps.base import (
    Delta,
    FileChange,
    Step,
    Undo,
    UnitAction,
    Verb,
    _docker_managed,
    _is_deb,
    _is_rpm,
    _is_suse,
    secret_mode,
)
from anywhere_agent.install.steps.credentials import CredentialsStep, cluster_exists
from anywhere_agent.install.steps.ecs_exec import ExecBinariesStep, ExecCertsStep
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
from anywhere_agent.install.steps.gpu import docker_runtime_step
from anywhere_agent.install.steps.packages import DockerStep, PackageStep
from anywhere_agent.install.steps.registration import (
    RegistrationStep,
    central_registration,
    deregister_own_registration,
)
from anywhere_agent.install.steps.services import ClusterMoveStep, ServiceStep
from anywhere_agent.install.steps.verify import VerifyJoinStep

__all__ = [
    "ClusterMoveStep", "CredentialsStep", "Delta", "DockerStep", "ExecBinariesStep",
    "ExecCertsStep", "FileChange", "FileStep", "PackageStep", "RegistrationStep", "ServiceStep",
    "Step", "Undo", "UnitAction", "Verb", "VerifyJoinStep", "all_steps",
    "central_registration", "cluster_exists", "deregister_own_registration", "secret_mode",
]


def all_steps() -> list[Step]:
    """Every step in order; `applies` drops those the config does not need."""
    ssm, ecs, docker, agent = agent_files.SSM_UNIT, agent_files.ECS_UNIT, agent_files.DOCKER_UNIT, \
        agent_files.AGENT_UNIT
    return [
        FileStep("agent-config", "effective agent.toml", "/etc/anywhere-agent/agent.toml",
                 _agent_toml, mode=0o600, readers=(agent,)),
        FileStep("apt-proxy", "proxy for apt", agent_files.APT_PROXY_CONF, _apt_proxy,
                 mode=secret_mode, when=_is_deb),
        FileStep("rpm-proxy", "proxy for dnf/yum", _rpm_conf, _rpm_proxy, mode=secret_mode,
                 when=_is_rpm),
        FileStep("zypper-proxy", "proxy for zypper", "/etc/sysconfig/proxy", _zypper_proxy,
                 mode=secret_mode, when=_is_suse),
        PackageStep("ssm-agent-package", agent_files.SSM_PACKAGE),
        FileStep("ssm-agent-config", "SSM agent endpoints", agent_files.SSM_CONFIG, _ssm_config,
                 mode=secret_mode, readers=(ssm,)),
        FileStep("ssm-agent-proxy-env", "proxy values for the SSM agent",
                 agent_files.proxy_env(ssm), _proxy_env, mode=0o600, readers=(ssm,)),
        FileStep("ssm-agent-proxy", "proxy for the SSM agent",
                 agent_files.proxy_dropin(ssm), _proxy_dropin_for(ssm), mode=0o600,
                 readers=(ssm,), unit_file=True),
        FileStep("ssm-agent-restart-policy", "restart policy for the SSM agent",
                 agent_files.restart_dropin(ssm),
                 _unit(f"{ssm}.service.d/{agent_files.RESTART_DROPIN}"), readers=(ssm,),
                 unit_file=True),
        RegistrationStep(),
        ServiceStep("ssm-agent-service", ssm),
        CredentialsStep(),
        DockerStep(),
        FileStep("docker-proxy-env", "proxy values for Docker", agent_files.proxy_env(docker),
                 _proxy_env, mode=0o600, readers=(docker,), when=_docker_managed),
        FileStep("docker-proxy", "proxy for Docker", agent_files.proxy_dropin(docker),
                 _proxy_dropin_for(docker), mode=0o600, readers=(docker,), unit_file=True,
                 when=_docker_managed),
        docker_runtime_step(),
        ServiceStep("docker-service", docker, when=_docker_managed),
        # AWS's order: ECS Exec's files before ecs-init, so the agent's first start offers it.
        ExecCertsStep(),
        ExecBinariesStep(),
        PackageStep("ecs-init-package", agent_files.ECS_PACKAGE),
        ClusterMoveStep(),
        FileStep("ecs-config", "ECS agent config", agent_files.ECS_CONFIG, _ecs_config,
                 mode=secret_mode, readers=(ecs,)),
        FileStep("ecs-var-config", "ECS external-instance config", agent_files.ECS_VAR_CONFIG,
                 _ecs_var_config, mode=secret_mode, readers=(ecs,)),
        FileStep("ecs-proxy-env", "proxy values for the ECS agent", agent_files.proxy_env(ecs),
                 _ecs_proxy_env, mode=0o600, readers=(ecs,)),
        FileStep("ecs-proxy", "proxy for the ECS agent", agent_files.proxy_dropin(ecs),
                 _proxy_dropin_for(ecs), mode=0o600, readers=(ecs,), unit_file=True),
        FileStep("ecs-restart-policy", "restart policy for the ECS agent",
                 agent_files.restart_dropin(ecs),
                 _unit(f"{ecs}.service.d/{agent_files.RESTART_DROPIN}"), readers=(ecs,),
                 unit_file=True),
        FileStep("supervisor-unit", "anywhere-agent supervisor unit", agent_files.AGENT_UNIT_PATH,
                 _unit("anywhere-agent.service"), readers=(agent,), unit_file=True),
        ServiceStep("ecs-service", ecs),
        ServiceStep("supervisor-service", agent),
        VerifyJoinStep(),
    ]
