"""Immutable typed node configuration: agent.toml < environment < flags, validated once."""

from __future__ import annotations

import dataclasses
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from anywhere_agent.errors import ConfigError
from anywhere_agent.host.agent_files import HEALTH_FILE
from anywhere_agent.secret import redact_userinfo

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.9/3.10 hosts only
    import tomli as tomllib

CONFIG_PATH = "/etc/anywhere-agent/agent.toml"

PACKAGE_SOURCES = ("aws", "repo", "bundle")
DOCKER_SOURCES = ("distro", "docker", "none")
# Services a node talks to; AWS_ENDPOINT_URL_<NAME> overrides each (botocore's convention).
ENDPOINT_SERVICES = ("ssm", "ec2messages", "ssmmessages", "ecs", "sts", "cloudwatch", "s3")
# The shape of every partition's region codes (us-east-1, us-gov-west-1, cn-north-1,
# us-isob-east-1, eusc-de-east-1), not a list of today's: a new region needs no release.
_REGION_RE = re.compile(r"[a-z]{2,4}(-[a-z]+)+-\d{1,2}")
_CLUSTER_RE = re.compile(r"^[A-Za-z0-9_-]{1,255}$")
_ACTIVATION_ID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_URL_RE = re.compile(r"^https?://[^\s/]+(/\S*)?$")
_FINGERPRINT_RE = re.compile(r"^(?:[0-9A-Fa-f]{4} ?){10}$")
_ATTR_NAME_RE = re.compile(r"^[A-Za-z0-9_.\-/]{1,128}$")
# A package version as AWS names its packages: upstream version, optional "-revision"
# (1.105.1 or 1.105.1-1; 3.3.1802.0). Empty means "latest".
_AGENT_VERSION_RE = re.compile(r"^[0-9][0-9A-Za-z.+~]*(-[0-9A-Za-z.+~]+)?$")


@dataclass(frozen=True)
class Proxy:
    http: str = ""
    https: str = ""
    no_proxy: str = ""

    @property
    def enabled(self) -> bool:
        return bool(self.http or self.https)

    def environment(self) -> dict[str, str]:
        """Proxy variables for a child process or a unit drop-in (both spellings)."""
        env: dict[str, str] = {}
        for key, value in (("http_proxy", self.http), ("https_proxy", self.https),
                           ("no_proxy", self.no_proxy)):
            if value:
                env[key] = value
                env[key.upper()] = value
        return env


@dataclass(frozen=True)
class SuperviseConfig:
    interval_seconds: float = 15.0
    failure_threshold: int = 3  # consecutive failed probes before remediation
    max_restarts_per_hour: int = 4  # circuit breaker per remediated unit
    backoff_initial_seconds: float = 30.0
    backoff_max_seconds: float = 600.0
    introspection_url: str = "http://127.0.0.1:51678"
    # The SSM agent rewrites its credentials at half life (~15 min of a ~30 min lifetime).
    credentials_warn_age_seconds: float = 1800.0
    credentials_crit_age_seconds: float = 3600.0
    # The ECS agent without an ACS session: the cluster reads it disconnected. Its reconnect
    # backoff tops out at 2 min, and a periodic reconnect takes about a second.
    acs_warn_seconds: float = 300.0
    acs_crit_seconds: float = 900.0
    disk_warn_percent: float = 85.0
    disk_crit_percent: float = 95.0
    memory_warn_percent: float = 90.0
    memory_crit_percent: float = 97.0
    inode_warn_percent: float = 85.0
    inode_crit_percent: float = 95.0
    load_warn_per_cpu: float = 4.0


@dataclass(frozen=True)
class HealthConfig:
    state_file: str = HEALTH_FILE
    stale_after_seconds: float = 90.0
    # node_exporter textfile collector file, e.g. /var/lib/node_exporter/anywhere_agent.prom
    textfile_path: str = ""
    metrics_listen: str = ""  # e.g. 127.0.0.1:9799 serves /metrics; empty = off
    # Where the supervisor says it cannot write state_file (tmpfs, so a full or read-only
    # /var/lib does not silence it); `health` reads it before state_file.
    write_error_file: str = "/run/anywhere-agent/health-write-error.json"


@dataclass(frozen=True)
class ReportingConfig:
    cloudwatch: bool = False
    cloudwatch_namespace: str = "ECSAnywhere/Agent"
    attribute: bool = False
    attribute_name: str = "anywhere-agent.health"


@dataclass(frozen=True)
class Config:
    region: str = ""
    cluster: str = "default"
    activation_id: str = ""
    package_source: str = "aws"
    bundle_dir: str = ""
    package_base_url: str = ""  # mirror of the official S3 layout (aws source)
    package_signing_key: str = ""  # extra trusted public key file for that mirror
    # Comma-separated primary-key fingerprints trusted besides the built-in pins (a rotation).
    package_signing_fingerprints: str = ""
    docker_source: str = "distro"
    enable_gpu: bool = False
    # The CA bundle ECS Exec's SSM agent trusts (AWS's --certs-file); "" = the first of the
    # distribution's known locations (anywhere_agent/host/ecs_exec.py).
    certs_file: str = ""
    ecs_loglevel: str = "info"
    join_timeout_seconds: float = 120.0
    # Pinned agent package versions; "" keeps the latest the source offers.
    ecs_agent_version: str = ""
    ssm_agent_version: str = ""
    proxy: Proxy = field(default_factory=Proxy)
    ecs_attributes: Mapping[str, str] = field(default_factory=dict)
    ecs_tags: Mapping[str, str] = field(default_factory=dict)
    endpoints: Mapping[str, str] = field(default_factory=dict)  # service -> URL; "default" = all
    supervise: SuperviseConfig = field(default_factory=SuperviseConfig)
    health: HealthConfig = field(default_factory=HealthConfig)
    reporting: ReportingConfig = field(default_factory=ReportingConfig)
    source_path: str = field(default="", compare=False)  # the agent.toml that was read

    def endpoint(self, service: str) -> str:
        """Endpoint override for `service`, or "" to use the public regional endpoint."""
        return self.endpoints.get(service) or self.endpoints.get("default", "")

    def public_endpoint(self, service: str) -> str:
        suffix = "amazonaws.com.cn" if self.region.startswith("cn-") else "amazonaws.com"
        return f"https://{service}.{self.region}.{suffix}"

    def effective_endpoint(self, service: str) -> str:
        return self.endpoint(service) or self.public_endpoint(service)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def require_region(self) -> None:
        if not self.region:
            raise ConfigError(
                "no region configured",
                "set region in /etc/anywhere-agent/agent.toml, ANYWHERE_AGENT_REGION or --region",
            )


# --- loading -------------------------------------------------------------------------------

_TOP_KEYS = {f.name for f in dataclasses.fields(Config)} - {
    "proxy", "ecs_attributes", "ecs_tags", "endpoints", "supervise", "health", "reporting",
    "source_path",
}
_SECTIONS: dict[str, type] = {
    "proxy": Proxy,
    "supervise": SuperviseConfig,
    "health": HealthConfig,
    "reporting": ReportingConfig,
}
# The activation code's variable: a secret, so read by install only, never part of Config.
ACTIVATION_CODE_ENV = "ANYWHERE_AGENT_ACTIVATION_CODE"
# Environment variables of the env layer (besides AWS_ENDPOINT_URL*): name -> dotted key.
ENV_KEYS: dict[str, str] = {
    "ANYWHERE_AGENT_REGION": "region",
    "AWS_REGION": "region",
    "AWS_DEFAULT_REGION": "region",
    "ANYWHERE_AGENT_CLUSTER": "cluster",
    "ANYWHERE_AGENT_ACTIVATION_ID": "activation_id",
    "ANYWHERE_AGENT_PACKAGE_SOURCE": "package_source",
    "ANYWHERE_AGENT_BUNDLE_DIR": "bundle_dir",
    "ANYWHERE_AGENT_PACKAGE_BASE_URL": "package_base_url",
    "ANYWHERE_AGENT_DOCKER_SOURCE": "docker_source",
    "ANYWHERE_AGENT_ENABLE_GPU": "enable_gpu",
    "ANYWHERE_AGENT_ECS_AGENT_VERSION": "ecs_agent_version",
    "ANYWHERE_AGENT_SSM_AGENT_VERSION": "ssm_agent_version",
    "ANYWHERE_AGENT_CERTS_FILE": "certs_file",
    "ANYWHERE_AGENT_HTTP_PROXY": "proxy.http",
    "ANYWHERE_AGENT_HTTPS_PROXY": "proxy.https",
    "ANYWHERE_AGENT_NO_PROXY": "proxy.no_proxy",
}
# Earlier names win within the env layer (ANYWHERE_AGENT_REGION beats AWS_REGION ...).
_ENV_ORDER = list(ENV_KEYS)


def _fail(where: str, key: str, problem: str, fix: str) -> ConfigError:
    return ConfigError(f"{where}: {key} {problem}", fix)


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return {}
    except OSError as err:
        raise ConfigError(f"cannot read {path}: {err.strerror}",
                          "check the file's permissions (run as root)") from None
    if raw.startswith(b"\xef\xbb\xbf"):
        # Windows editors save UTF-8 with a byte order mark; TOML forbids it, and tomllib's
        # "Invalid statement (at line 1, column 1)" does not say why.
        raise ConfigError(f"{path} starts with a UTF-8 byte order mark (BOM), which TOML "
                          "does not allow",
                          f"save it as UTF-8 without BOM, e.g. `sed -i '1s/^\\xEF\\xBB\\xBF//' "
                          f"{path}`")
    try:
        return tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path} is not valid TOML ({err})",
                          "fix the syntax; see README 'Configuration' for an example") from None


def _flatten_toml(doc: Mapping[str, Any], where: str) -> dict[str, Any]:
    """agent.toml -> {dotted key: value}; unknown keys are errors (typos must not pass)."""
    flat: dict[str, Any] = {}
    for key, value in doc.items():
        if key in _TOP_KEYS:
            flat[key] = value
        elif key in _SECTIONS and isinstance(value, Mapping):
            names = {f.name for f in dataclasses.fields(_SECTIONS[key])}
            for sub, sub_value in value.items():
                if sub not in names:
                    raise _fail(where, f"{key}.{sub}", "is not a known key",
                                f"remove it or use one of: {', '.join(sorted(names))}")
                flat[f"{key}.{sub}"] = sub_value
        elif key == "ecs" and isinstance(value, Mapping):
            for sub, sub_value in value.items():
                if sub not in ("attributes", "tags"):
                    raise _fail(where, f"ecs.{sub}", "is not a known key",
                                "use [ecs.attributes] or [ecs.tags]")
                flat[f"ecs_{sub}"] = sub_value
        elif key == "endpoints" and isinstance(value, Mapping):
            for sub, sub_value in value.items():
                flat[f"endpoints.{sub}"] = sub_value
        else:
            raise _fail(where, key, "is not a known key or section",
                        "see README 'Configuration' for the keys agent.toml accepts")
    return flat


def _env_layer(env: Mapping[str, str]) -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for name in reversed(_ENV_ORDER):
        value = env.get(name)
        if value:
            flat[ENV_KEYS[name]] = value
    if env.get("AWS_ENDPOINT_URL"):
        flat["endpoints.default"] = env["AWS_ENDPOINT_URL"]
    for service in ENDPOINT_SERVICES:
        value = env.get(f"AWS_ENDPOINT_URL_{service.upper()}")
        if value:
            flat[f"endpoints.{service}"] = value
    return flat


def _as_bool(value: Any, where: str, key: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("1", "true", "yes", "on"):
        return True
    if isinstance(value, str) and value.lower() in ("0", "false", "no", "off", ""):
        return False
    raise _fail(where, key, f"must be true or false (got {value!r})", f"set {key} = true or false")


def _as_number(value: Any, where: str, key: str, kind: type) -> float | int:
    try:
        if isinstance(value, bool):
            raise ValueError
        number = kind(value)
    except (TypeError, ValueError):
        raise _fail(where, key, f"must be a number (got {value!r})",
                    f"set {key} to a positive number") from None
    if number < 0:
        raise _fail(where, key, f"must not be negative (got {value!r})",
                    f"set {key} to a positive number")
    return number  # type: ignore[no-any-return]


def _as_str_map(value: Any, where: str, key: str) -> dict[str, str]:
    if isinstance(value, str):  # KEY=VALUE,KEY=VALUE (env and flags)
        pairs = [p for p in value.split(",") if p.strip()]
        out: dict[str, str] = {}
        for pair in pairs:
            k, sep, v = pair.partition("=")
            if not sep or not k.strip():
                raise _fail(where, key, f"entry {pair!r} is not KEY=VALUE",
                            f"write {key} as KEY=VALUE pairs")
            out[k.strip()] = v.strip()
        value = out
    if not isinstance(value, Mapping):
        raise _fail(where, key, "must be a table of strings",
                    f"write it as [{key}] name = \"value\"")
    result: dict[str, str] = {}
    for k, v in value.items():
        if not _ATTR_NAME_RE.match(str(k)) or not isinstance(v, (str, int, float, bool)):
            raise _fail(where, f"{key}.{k}", "is not a valid name/value",
                        "use names of letters, digits, . _ - / (max 128) and string values")
        result[str(k)] = str(v).lower() if isinstance(v, bool) else str(v)
    return result


def _build(flat: Mapping[str, Any], where: Mapping[str, str], source_path: str) -> Config:
    """Typed, validated Config from a flat {dotted key: value} map; `where` names each source."""

    def w(key: str) -> str:
        return where.get(key, "config")

    top: dict[str, Any] = {}
    sections: dict[str, dict[str, Any]] = {name: {} for name in _SECTIONS}
    endpoints: dict[str, str] = {}
    for key, value in flat.items():
        if key.startswith("endpoints."):
            service = key.split(".", 1)[1]
            if service != "default" and service not in ENDPOINT_SERVICES:
                raise _fail(w(key), key, "names an unknown service",
                            f"use one of: default, {', '.join(ENDPOINT_SERVICES)}")
            if not isinstance(value, str) or not _URL_RE.match(value):
                raise _fail(w(key), key, f"must be an http(s) URL (got {value!r})",
                            "write it as https://host[:port]")
            endpoints[service] = value.rstrip("/")
        elif "." in key:
            section, sub = key.split(".", 1)
            sections[section][sub] = value
        else:
            top[key] = value

    def sect(name: str) -> Any:
        cls = _SECTIONS[name]
        kwargs: dict[str, Any] = {}
        types = {f.name: f.type for f in dataclasses.fields(cls)}
        for sub, value in sections[name].items():
            key = f"{name}.{sub}"
            t = str(types[sub])
            if t == "bool":
                kwargs[sub] = _as_bool(value, w(key), key)
            elif t in ("float", "int"):
                kwargs[sub] = _as_number(value, w(key), key, float if t == "float" else int)
            else:
                if not isinstance(value, str):
                    raise _fail(w(key), key, f"must be a string (got {value!r})",
                                f"quote the value of {key}")
                kwargs[sub] = value
        return cls(**kwargs)

    kwargs: dict[str, Any] = {}
    for key, value in top.items():
        if key == "enable_gpu":
            kwargs[key] = _as_bool(value, w(key), key)
        elif key == "join_timeout_seconds":
            kwargs[key] = float(_as_number(value, w(key), key, float))
        elif key in ("ecs_attributes", "ecs_tags"):
            kwargs[key] = _as_str_map(value, w(key), key.replace("_", ".", 1))
        else:
            if not isinstance(value, str):
                raise _fail(w(key), key, f"must be a string (got {value!r})",
                            f"quote the value of {key}")
            kwargs[key] = value.strip()
    cfg = Config(
        **kwargs,
        proxy=sect("proxy"),
        supervise=sect("supervise"),
        health=sect("health"),
        reporting=sect("reporting"),
        endpoints=endpoints,
        source_path=source_path,
    )
    _validate(cfg, w)
    return cfg


def is_region(name: str) -> bool:
    """Whether `name` has the shape of an AWS region code (the one check: node and registrar)."""
    return _REGION_RE.fullmatch(name) is not None


def _validate(cfg: Config, w: Any) -> None:
    if cfg.region and not is_region(cfg.region):
        raise _fail(w("region"), "region", f"{cfg.region!r} is not an AWS region name",
                    "use a region such as us-east-1 (the region of your activation)")
    if not _CLUSTER_RE.match(cfg.cluster):
        raise _fail(w("cluster"), "cluster", f"{cfg.cluster!r} is not a valid cluster name",
                    "use 1-255 letters, digits, hyphens or underscores")
    if cfg.activation_id and not _ACTIVATION_ID_RE.match(cfg.activation_id):
        raise _fail(w("activation_id"), "activation_id",
                    "is not an activation ID (a lowercase UUID)",
                    "copy the ActivationId printed by `registrar activate` or CreateActivation")
    if cfg.package_source not in PACKAGE_SOURCES:
        raise _fail(w("package_source"), "package_source",
                    f"must be one of {', '.join(PACKAGE_SOURCES)} (got {cfg.package_source!r})",
                    "set package_source = \"aws\", \"repo\" or \"bundle\"")
    if cfg.package_source == "bundle" and not cfg.bundle_dir:
        raise _fail(w("bundle_dir"), "bundle_dir", "is required when package_source = bundle",
                    "set bundle_dir to the directory made by `anywhere-agent bundle`")
    if cfg.package_base_url and not _URL_RE.match(cfg.package_base_url):
        raise _fail(w("package_base_url"), "package_base_url", "must be an http(s) URL",
                    "write it as https://mirror.example/path")
    for fpr in filter(None, (f.strip() for f in cfg.package_signing_fingerprints.split(","))):
        if not _FINGERPRINT_RE.match(fpr):
            raise _fail(w("package_signing_fingerprints"), "package_signing_fingerprints",
                        f"entry {fpr!r} is not a 40-hex-digit key fingerprint",
                        "copy the fingerprint gpg prints (`gpg --show-keys KEYFILE`)")
    if cfg.docker_source not in DOCKER_SOURCES:
        raise _fail(w("docker_source"), "docker_source",
                    f"must be one of {', '.join(DOCKER_SOURCES)} (got {cfg.docker_source!r})",
                    "set docker_source = \"distro\", \"docker\" or \"none\"")
    for key, url in (("proxy.http", cfg.proxy.http), ("proxy.https", cfg.proxy.https)):
        if url and not _URL_RE.match(url):
            raise _fail(w(key), key, "must be a URL like http://proxy:3128 "
                        f"(got {redact_userinfo(url)!r})",
                        f"fix {key}")
    for key in ("ecs_agent_version", "ssm_agent_version"):
        version = getattr(cfg, key)
        if version and not _AGENT_VERSION_RE.match(version):
            raise _fail(w(key), key, f"{version!r} is not a package version",
                        f"set {key} to a version such as "
                        f"{'1.105.1' if key.startswith('ecs') else '3.3.1802.0'}, "
                        "or leave it empty for the latest")
    if cfg.supervise.acs_crit_seconds < cfg.supervise.acs_warn_seconds:
        raise _fail(w("supervise.acs_crit_seconds"), "supervise.acs_crit_seconds",
                    "must not be below supervise.acs_warn_seconds",
                    "raise acs_crit_seconds or lower acs_warn_seconds")
    if cfg.ecs_loglevel not in ("debug", "info", "warn", "error", "crit"):
        raise _fail(w("ecs_loglevel"), "ecs_loglevel", "must be debug, info, warn, error or crit",
                    "set ecs_loglevel = \"info\"")


def load_config(
    root: Path = Path("/"),
    env: Mapping[str, str] | None = None,
    flags: Mapping[str, Any] | None = None,
    path: str | None = None,
) -> Config:
    """agent.toml (under `root`) < environment < flags; raises ConfigError with one line."""
    env = env if env is not None else {}
    config_path = path or env.get("ANYWHERE_AGENT_CONFIG") or CONFIG_PATH
    file_path = root / config_path.lstrip("/")
    doc = _read_toml(file_path)
    flat: dict[str, Any] = {}
    where: dict[str, str] = {}
    for layer_name, layer in (
        (str(config_path), _flatten_toml(doc, str(config_path))),
        ("environment", _env_layer(env)),
        ("flag", {k: v for k, v in (flags or {}).items() if v is not None}),
    ):
        for key, value in layer.items():
            flat[key] = value
            where[key] = layer_name
    return _build(flat, where, str(config_path) if doc else "")


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    text = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{text}"'


def render_toml(cfg: Config) -> str:
    """agent.toml holding every value that differs from the defaults (install writes it back so
    later `status`, `uninstall` and the supervisor see what install was told)."""
    default = Config()
    lines = ["# Written by `anywhere-agent install` (effective configuration; edit freely,",
             "# install re-reads it and flags/environment override it).", ""]
    for key in sorted(_TOP_KEYS):
        value = getattr(cfg, key)
        if key in ("ecs_attributes", "ecs_tags") or value == getattr(default, key):
            continue
        lines.append(f"{key} = {_toml_value(value)}")
    for section in ("proxy", "supervise", "health", "reporting"):
        obj, base = getattr(cfg, section), getattr(default, section)
        items = [(f.name, getattr(obj, f.name)) for f in dataclasses.fields(obj)
                 if getattr(obj, f.name) != getattr(base, f.name)]
        if items:
            lines += ["", f"[{section}]"] + [f"{k} = {_toml_value(v)}" for k, v in items]
    for title, mapping in (("ecs.attributes", cfg.ecs_attributes), ("ecs.tags", cfg.ecs_tags),
                           ("endpoints", cfg.endpoints)):
        if mapping:
            lines += ["", f"[{title}]"] + [f'"{k}" = {_toml_value(v)}'
                                           for k, v in sorted(mapping.items())]
    return "\n".join(lines) + "\n"


def load_health_config(root: Path = Path("/"), env: Mapping[str, str] | None = None,
                       path: str | None = None) -> HealthConfig:
    """The [health] settings for `health`, which monitoring users run without root.

    agent.toml is 0600 because it can hold proxy passwords; a user who cannot read it gets
    the defaults, which is where install and the supervisor put the state file unless told
    otherwise (`health --state-file` names another). Anything else wrong with the file is
    still a ConfigError.
    """
    env = env if env is not None else {}
    config_path = path or env.get("ANYWHERE_AGENT_CONFIG") or CONFIG_PATH
    try:
        with open(root / config_path.lstrip("/"), "rb"):
            pass
    except PermissionError:
        return HealthConfig()
    except OSError:
        pass  # missing or otherwise unreadable: load_config says what, or uses defaults
    return load_config(root, env, {}, path).health
