"""The lab-only admin API under /_lab/: faults, clock, seeding, call counters, state (JSON)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from anywhere_agent.lab.control_plane.faults import FaultRule
from anywhere_agent.lab.control_plane.wire import AwsError, Json, Response

if TYPE_CHECKING:
    from anywhere_agent.lab.control_plane.server import ControlPlane

Handler = Callable[[Json, "re.Match[str]"], Json]


class LabApi:
    """Routes /_lab/ requests; never subject to faults, never counted as AWS calls."""

    def __init__(self, plane: ControlPlane) -> None:
        self._plane = plane
        self._routes: list[tuple[str, re.Pattern[str], Handler]] = [
            ("GET", re.compile(r"/_lab/state"), self._state),
            ("POST", re.compile(r"/_lab/reset"), self._reset),
            ("GET", re.compile(r"/_lab/calls"), self._calls),
            ("DELETE", re.compile(r"/_lab/calls"), self._reset_calls),
            ("GET", re.compile(r"/_lab/faults"), self._faults),
            ("PUT", re.compile(r"/_lab/faults"), self._set_faults),
            ("DELETE", re.compile(r"/_lab/faults"), self._clear_faults),
            ("GET", re.compile(r"/_lab/clock"), self._clock),
            ("POST", re.compile(r"/_lab/clock"), self._advance_clock),
            ("GET", re.compile(r"/_lab/config"), self._config),
            ("PUT", re.compile(r"/_lab/config"), self._set_config),
            ("POST", re.compile(r"/_lab/activations/(?P<id>[^/]+)/expire"), self._expire),
            (
                "POST",
                re.compile(r"/_lab/instances/(?P<id>mi-[0-9a-f]+)/deny-tokens"),
                self._deny_tokens,
            ),
            ("POST", re.compile(r"/_lab/container-instances/tasks"), self._tasks),
            ("POST", re.compile(r"/_lab/acs"), self._refuse_acs),
            ("POST", re.compile(r"/_lab/seed"), self._seed),
        ]

    def handle(self, environ: dict[str, Any], body: bytes) -> Response:
        method, path = str(environ.get("REQUEST_METHOD")), str(environ.get("PATH_INFO"))
        known_path = False
        for route_method, pattern, handler in self._routes:
            match = pattern.fullmatch(path.rstrip("/"))
            if match is None:
                continue
            known_path = True
            if route_method != method:
                continue
            try:
                payload = json.loads(body) if body.strip() else {}
                if not isinstance(payload, dict):
                    raise ValueError("the request body must be a JSON object")
                return _json(200, handler(payload, match))
            except AwsError as error:
                return _json(404, {"error": error.message, "code": error.code})
            except (ValueError, KeyError, TypeError) as error:
                return _json(400, {"error": f"{type(error).__name__}: {error}"})
        if known_path:
            return _json(405, {"error": f"{method} is not allowed on {path}"})
        return _json(404, {"error": f"no lab endpoint {path}"})

    def _state(self, payload: Json, match: re.Match[str]) -> Json:
        plane = self._plane
        return {
            "region": plane.region,
            "url": plane.url,
            "region_urls": plane.region_urls,
            "clock": {
                "now": plane.clock.now(),
                "offset_seconds": plane.clock.offset,
                "time_scale": plane.clock.scale,
            },
            "sessions": plane.sessions.summary(),
            "config": self._config(payload, match),
            "ssm": plane.ssm.summary(),
            "ecs": {"clusters": plane.ecs.summary()},
            "faults": plane.faults.to_json(),
            "calls_total": sum(
                sum(ops.values()) for ops in plane.calls.snapshot()["calls"].values()
            ),
        }

    def _reset(self, payload: Json, match: re.Match[str]) -> Json:
        self._plane.reset()
        return {}

    def _calls(self, payload: Json, match: re.Match[str]) -> Json:
        return self._plane.calls.snapshot()

    def _reset_calls(self, payload: Json, match: re.Match[str]) -> Json:
        self._plane.calls.reset()
        return {}

    def _faults(self, payload: Json, match: re.Match[str]) -> Json:
        return self._plane.faults.to_json()

    def _set_faults(self, payload: Json, match: re.Match[str]) -> Json:
        rules = [FaultRule.from_json(rule) for rule in payload.get("rules", [])]
        seed = payload.get("seed")
        self._plane.faults.configure(rules, None if seed is None else int(seed))
        return self._plane.faults.to_json()

    def _clear_faults(self, payload: Json, match: re.Match[str]) -> Json:
        self._plane.faults.configure([])
        return self._plane.faults.to_json()

    def _clock(self, payload: Json, match: re.Match[str]) -> Json:
        clock = self._plane.clock
        return {"now": clock.now(), "offset_seconds": clock.offset, "time_scale": clock.scale}

    def _advance_clock(self, payload: Json, match: re.Match[str]) -> Json:
        seconds = float(payload["advance_seconds"])
        if seconds < 0:
            raise ValueError("the lab clock only moves forward")
        self._plane.clock.advance(seconds)
        return self._clock(payload, match)

    def _config(self, payload: Json, match: re.Match[str]) -> Json:
        plane = self._plane
        return {
            "ping_timeout": plane.ssm.ping_timeout,
            "credential_lifetime": plane.ssm.credential_lifetime,
            "acs_heartbeat_seconds": plane.sessions.heartbeat_seconds,
            "long_poll_seconds": plane.ssm.long_poll_seconds,
        }

    def _set_config(self, payload: Json, match: re.Match[str]) -> Json:
        plane = self._plane
        if "ping_timeout" in payload:
            plane.ssm.ping_timeout = _positive(payload["ping_timeout"])
        if "credential_lifetime" in payload:
            plane.ssm.credential_lifetime = _positive(payload["credential_lifetime"])
        if "acs_heartbeat_seconds" in payload:
            plane.sessions.heartbeat_seconds = _positive(payload["acs_heartbeat_seconds"])
        if "long_poll_seconds" in payload:
            plane.ssm.long_poll_seconds = float(payload["long_poll_seconds"])
            if plane.ssm.long_poll_seconds < 0:
                raise ValueError("long_poll_seconds must be >= 0")
        return self._config(payload, match)

    def _expire(self, payload: Json, match: re.Match[str]) -> Json:
        self._plane.ssm.expire_activation(match["id"])
        return {}

    def _deny_tokens(self, payload: Json, match: re.Match[str]) -> Json:
        self._plane.ssm.deny_tokens(match["id"], bool(payload.get("deny", True)))
        return {}

    def _refuse_acs(self, payload: Json, match: re.Match[str]) -> Json:
        self._plane.sessions.refuse_acs(str(payload["instance"]), bool(payload.get("refuse", True)))
        return self._plane.sessions.summary()

    def _tasks(self, payload: Json, match: re.Match[str]) -> Json:
        running = int(payload["running"])
        if running < 0:
            raise ValueError("running must be >= 0")
        self._plane.ecs.set_tasks(
            str(payload.get("region") or self._plane.region),
            str(payload["cluster"]),
            str(payload["container_instance"]),
            running,
            float(payload.get("drain_delay_seconds", 0.0)),
        )
        return {}

    def _seed(self, payload: Json, match: re.Match[str]) -> Json:
        count = int(payload["count"])
        if not 0 < count <= 100_000:
            raise ValueError("count must be within 1..100000")
        region = str(payload.get("region") or self._plane.region)
        instance_ids = self._plane.ssm.seed(
            region,
            count,
            bool(payload.get("online", True)),
            str(payload.get("activation_id", "")),
            str(payload.get("name_prefix") or "seed"),
        )
        arns: list[str] = []
        if payload.get("cluster"):
            arns = self._plane.ecs.seed(
                region,
                str(payload["cluster"]),
                instance_ids,
                bool(payload.get("agent_connected", True)),
            )
        return {"instance_ids": instance_ids, "container_instance_arns": arns}


def _positive(value: Any) -> float:
    number = float(value)
    if number <= 0:
        raise ValueError(f"{value!r} is not a positive number of seconds")
    return number


def _json(status: int, payload: Json) -> Response:
    body = json.dumps(payload).encode()
    return status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))], body
