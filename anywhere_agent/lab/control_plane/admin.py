"""Typed client for the control plane's /_lab/ admin API (stdlib only, no moto import)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any, Optional

from anywhere_agent.lab.control_plane.faults import FaultRule

__all__ = ["CallCounts", "FaultRule", "LabAdmin", "LabAdminError", "SeedResult"]


class LabAdminError(RuntimeError):
    """The admin API refused a request (bad input, unknown id) or could not be reached."""


@dataclass(frozen=True)
class CallCounts:
    """AWS calls seen by the control plane: {service: {operation: count}}."""

    calls: dict[str, dict[str, int]]
    faulted: dict[str, dict[str, int]]

    def count(self, service: str, operation: Optional[str] = None) -> int:
        operations = self.calls.get(service, {})
        return sum(operations.values()) if operation is None else operations.get(operation, 0)


@dataclass(frozen=True)
class SeedResult:
    instance_ids: list[str]
    container_instance_arns: list[str]


class LabAdmin:
    """Calls /_lab/ endpoints of a control plane at base_url (e.g. ControlPlane.url)."""

    def __init__(self, base_url: str, timeout: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout

    def state(self) -> dict[str, Any]:
        return self._request("GET", "/_lab/state")

    def reset(self) -> None:
        self._request("POST", "/_lab/reset")

    def calls(self) -> CallCounts:
        data = self._request("GET", "/_lab/calls")
        return CallCounts(calls=data["calls"], faulted=data["faulted"])

    def reset_calls(self) -> None:
        self._request("DELETE", "/_lab/calls")

    def set_faults(self, rules: list[FaultRule], seed: Optional[int] = None) -> None:
        payload: dict[str, Any] = {"rules": [rule.to_json() for rule in rules]}
        if seed is not None:
            payload["seed"] = seed
        self._request("PUT", "/_lab/faults", payload)

    def clear_faults(self) -> None:
        self._request("DELETE", "/_lab/faults")

    def faults(self) -> list[FaultRule]:
        return [FaultRule.from_json(r) for r in self._request("GET", "/_lab/faults")["rules"]]

    def advance_clock(self, seconds: float) -> float:
        """Move the lab clock forward; returns the new lab time (epoch seconds)."""
        return float(self._request("POST", "/_lab/clock", {"advance_seconds": seconds})["now"])

    def configure(
        self,
        ping_timeout: Optional[float] = None,
        credential_lifetime: Optional[float] = None,
        acs_heartbeat_seconds: Optional[float] = None,
        long_poll_seconds: Optional[float] = None,
    ) -> dict[str, float]:
        """Change lab timings (seconds of lab time); returns them all."""
        payload = {
            key: value
            for key, value in (
                ("ping_timeout", ping_timeout),
                ("credential_lifetime", credential_lifetime),
                ("acs_heartbeat_seconds", acs_heartbeat_seconds),
                ("long_poll_seconds", long_poll_seconds),
            )
            if value is not None
        }
        return self._request("PUT", "/_lab/config", payload)

    def expire_activation(self, activation_id: str) -> None:
        self._request("POST", f"/_lab/activations/{activation_id}/expire")

    def deny_role_tokens(self, instance_id: str, deny: bool = True) -> None:
        self._request("POST", f"/_lab/instances/{instance_id}/deny-tokens", {"deny": deny})

    def refuse_acs(self, instance: str, refuse: bool = True) -> None:
        """Refuse ACS sessions to one host (mi- ID or container instance ARN), or allow again.

        Its open session is closed, so the agent re-dials with backoff and the instance reads
        agentConnected=false until the switch is turned back."""
        self._request("POST", "/_lab/acs", {"instance": instance, "refuse": refuse})

    def set_running_tasks(
        self,
        cluster: str,
        container_instance: str,
        running: int,
        drain_delay_seconds: float = 0.0,
        region: Optional[str] = None,
    ) -> None:
        """Simulate tasks on an external instance; once DRAINING they leave after the delay."""
        self._request(
            "POST",
            "/_lab/container-instances/tasks",
            {
                "cluster": cluster,
                "container_instance": container_instance,
                "running": running,
                "drain_delay_seconds": drain_delay_seconds,
                "region": region,
            },
        )

    def seed(
        self,
        count: int,
        cluster: Optional[str] = None,
        online: bool = True,
        agent_connected: bool = True,
        activation_id: str = "",
        region: Optional[str] = None,
        name_prefix: str = "seed",
    ) -> SeedResult:
        """Add count managed instances (and container instances in cluster) without API calls;
        their computer names are name_prefix-0, name_prefix-1, ..."""
        data = self._request(
            "POST",
            "/_lab/seed",
            {
                "count": count,
                "cluster": cluster,
                "online": online,
                "agent_connected": agent_connected,
                "activation_id": activation_id,
                "region": region,
                "name_prefix": name_prefix,
            },
        )
        return SeedResult(data["instance_ids"], data["container_instance_arns"])

    def _request(
        self, method: str, path: str, payload: Optional[dict[str, Any]] = None
    ) -> dict[str, Any]:
        body = None if payload is None else json.dumps(payload).encode()
        request = urllib.request.Request(  # noqa: S310 - the URL is the lab's own http endpoint
            self.base_url + path,
            data=body,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
                data = json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as error:
            detail = error.read().decode("utf-8", "replace")
            raise LabAdminError(f"{method} {path} failed ({error.code}): {detail}") from None
        except urllib.error.URLError as error:
            raise LabAdminError(
                f"{method} {path}: cannot reach {self.base_url}: {error.reason}"
            ) from None
        if not isinstance(data, dict):
            raise LabAdminError(f"{method} {path}: unexpected answer {data!r}")
        return data
