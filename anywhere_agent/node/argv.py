"""What install refuses on its command line: secrets there show in ps and shell history."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from anywhere_agent.config import ACTIVATION_CODE_ENV as CODE_ENV
from anywhere_agent.config import CONFIG_PATH
from anywhere_agent.errors import UsageError
from anywhere_agent.secret import has_userinfo, redact_userinfo


def refuse_code_on_argv() -> UsageError:
    return UsageError("the activation code must not be given on the command line "
                      "(it shows in ps and shell history)",
                      f"use --activation-code-file FILE, --activation-code-file - or "
                      f"{CODE_ENV}; consider revoking this activation")


# The flag of each proxy key, and the places that keep its credentials off the command line.
_PROXY_FLAGS = {"proxy.http": ("--http-proxy", "ANYWHERE_AGENT_HTTP_PROXY", "http"),
                "proxy.https": ("--https-proxy", "ANYWHERE_AGENT_HTTPS_PROXY", "https")}


def refuse_proxy_credentials(flags: Mapping[str, Any]) -> None:
    """For the command line's flags (dotted keys, as load_config takes them): a proxy URL
    with credentials on our argv shows in ps and shell history, as an activation code would,
    so it is refused (exit 2) before anything runs, the fix naming the two places that keep
    it private."""
    for key, (flag, env_name, toml_key) in _PROXY_FLAGS.items():
        value = flags.get(key)
        if isinstance(value, str) and has_userinfo(value):
            raise UsageError(
                f"{flag} {redact_userinfo(value)} carries proxy credentials on the command "
                "line (they show in ps and shell history)",
                f"instead of {flag}, put the URL in {CONFIG_PATH} ([proxy] {toml_key}; the "
                f"file is 0600) or in {env_name}; change the proxy password if this command "
                "line was shared")
