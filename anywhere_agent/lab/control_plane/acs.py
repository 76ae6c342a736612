"""ACS and TCS, the ECS agent's WebSocket sessions: heartbeats, acks, and what "connected" means.

AWS's `agentConnected` is the agent's ACS session being up. The agent dials `GET /ws` on the
`endpoint` that DiscoverPollEndpoint returned (query: clusterArn, containerInstanceArn,
agentVersion, agentHash, seqNum=1, protocolVersion=2, sendCredentials) and TCS on the
`telemetryEndpoint` (query: cluster, containerInstance, agentVersion, ...). Message shapes are
those of ecs-agent/acs/model/api/api-2.json: `{"type": "HeartbeatMessage", "message":
{"healthy": true, "messageId": "..."}}`, answered by `HeartbeatAckRequest {messageId}`.
The agent closes a session that has had no server message for 1 min + up to 1 min jitter;
under protocol version 2 ACS closes a session whose heartbeat acks stop coming.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Optional

from anywhere_agent.lab.control_plane.websocket import (
    CLOSE_GOING_AWAY,
    CLOSE_POLICY,
    ConnectionClosed,
    WebSocket,
)
from anywhere_agent.lab.control_plane.wire import AwsError, Clock, Json

LOG = logging.getLogger(__name__)

# Lab choices (AWS does not publish them): a heartbeat every 30 s of lab time keeps well under
# the agent's 60 s minimum silence; two unanswered heartbeats (about a minute) end a session.
HEARTBEAT_SECONDS = 30.0
MISSED_ACKS_BEFORE_CLOSE = 2

ACS, TCS = "acs", "tcs"
_TCS_ACKS = {
    "PublishMetricsRequest": "AckPublishMetric",
    "PublishHealthRequest": "AckPublishHealth",
    "PublishInstanceStatusRequest": "AckPublishInstanceStatus",
}


@dataclass(frozen=True)
class SessionTarget:
    """Who dialled: which session kind, for which container instance (ARN) of which host."""

    kind: str
    cluster: str
    container_instance: str
    instance_id: str


def session_kind(query: Mapping[str, str]) -> str:
    """ACS's query names the instance `containerInstanceArn`; TCS's `containerInstance`."""
    if "containerInstanceArn" in query:
        return ACS
    if "containerInstance" in query:
        return TCS
    raise AwsError(
        "BadRequestException", "the query names no containerInstanceArn or containerInstance"
    )


def message(kind: str, body: Json) -> str:
    return json.dumps({"type": kind, "message": body}, separators=(",", ":"))


class Sessions:
    """Open ACS/TCS sessions by container instance ARN, and a switch that refuses ACS to one."""

    def __init__(self, clock: Clock, heartbeat_seconds: float = HEARTBEAT_SECONDS) -> None:
        self.clock = clock
        self.heartbeat_seconds = heartbeat_seconds
        self._lock = threading.Lock()
        self._open: dict[str, dict[str, list[WebSocket]]] = {ACS: {}, TCS: {}}
        self._refused: set[str] = set()
        self._owner_of: dict[int, str] = {}
        self._counts = {"acs_sessions": 0, "tcs_sessions": 0, "heartbeats": 0, "acks": 0}

    def reset(self) -> None:
        with self._lock:
            sockets = [ws for kind in self._open.values() for ws in _flat(kind)]
            for table in self._open.values():
                table.clear()
            self._refused.clear()
            for key in self._counts:
                self._counts[key] = 0
        for ws in sockets:
            ws.close(CLOSE_GOING_AWAY, "lab reset")

    def connected(self, container_instance_arn: str) -> bool:
        with self._lock:
            return bool(self._open[ACS].get(container_instance_arn))

    def open_count(self, kind: str) -> int:
        with self._lock:
            return sum(len(v) for v in self._open[kind].values())

    def summary(self) -> Json:
        with self._lock:
            return {
                **self._counts,
                "acs_open": sum(len(v) for v in self._open[ACS].values()),
                "tcs_open": sum(len(v) for v in self._open[TCS].values()),
                "acs_refused": sorted(self._refused),
            }

    def refuse_acs(self, key: str, refuse: bool) -> None:
        """Refuse (or allow again) ACS for a host (mi- ID) or container instance ARN.

        Open sessions of that host are closed, so its agent re-dials with backoff and reads
        as disconnected until the switch is turned back, like an ACS outage for one host.
        """
        with self._lock:
            if refuse:
                self._refused.add(key)
            else:
                self._refused.discard(key)
            closing = [ws for arn, socks in self._open[ACS].items() if arn == key for ws in socks]
            closing += [
                ws for (arn, owner), socks in self._owners().items() if owner == key for ws in socks
            ]
        if refuse:
            for ws in closing:
                ws.close(CLOSE_GOING_AWAY, "lab: ACS refused for this instance")

    def check_refused(self, target: SessionTarget) -> None:
        with self._lock:
            refused = {target.container_instance, target.instance_id} & self._refused
        if target.kind == ACS and refused:
            raise AwsError("ServerException", "ACS is unavailable for this instance (lab switch)")

    def serve(
        self, ws: WebSocket, target: SessionTarget, still_registered: Callable[[], bool]
    ) -> None:
        """Run one session until either side ends it (blocks its server thread)."""
        with self._lock:
            self._open[target.kind].setdefault(target.container_instance, []).append(ws)
            self._owner_of[id(ws)] = target.instance_id
            self._counts[f"{target.kind}_sessions"] += 1
        LOG.info("%s session up for %s", target.kind.upper(), target.container_instance)
        try:
            if target.kind == ACS:
                self._serve_acs(ws, still_registered)
            else:
                self._serve_tcs(ws)
        except ConnectionClosed as closed:
            LOG.info(
                "%s session for %s ended: %s",
                target.kind.upper(),
                target.container_instance,
                closed,
            )
        finally:
            with self._lock:
                socks = self._open[target.kind].get(target.container_instance, [])
                if ws in socks:
                    socks.remove(ws)
                if not socks:
                    self._open[target.kind].pop(target.container_instance, None)
                self._owner_of.pop(id(ws), None)
            ws.shutdown()

    def _serve_acs(self, ws: WebSocket, still_registered: Callable[[], bool]) -> None:
        outstanding: set[str] = set()
        while not ws.closed:
            if not still_registered():
                ws.send_text(
                    message(
                        "InactiveInstanceException",
                        {"message": "The container instance is not active (deregistered)"},
                    )
                )
                ws.close(CLOSE_POLICY, "inactive instance")
                return
            if len(outstanding) >= MISSED_ACKS_BEFORE_CLOSE:
                ws.close(CLOSE_POLICY, "heartbeat acks missing")
                return
            beat = str(uuid.uuid4())
            ws.send_text(message("HeartbeatMessage", {"healthy": True, "messageId": beat}))
            outstanding.add(beat)
            self._count("heartbeats")
            self._listen(ws, self.heartbeat_seconds, outstanding)

    def _serve_tcs(self, ws: WebSocket) -> None:
        while not ws.closed:
            ws.send_text(message("HeartbeatMessage", {"healthy": True}))
            self._listen(ws, self.heartbeat_seconds, None)

    def _listen(self, ws: WebSocket, lab_seconds: float, outstanding: Optional[set[str]]) -> None:
        """Read and answer the agent's messages for `lab_seconds` of lab time."""
        deadline = time.monotonic() + self.clock.real_seconds(lab_seconds)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            text = ws.receive(left)
            if text is None:
                return
            try:
                doc = json.loads(text)
            except ValueError:
                continue
            kind = str(doc.get("type", "")) if isinstance(doc, dict) else ""
            body = doc.get("message") if isinstance(doc, dict) else None
            body = body if isinstance(body, dict) else {}
            if kind == "HeartbeatAckRequest" and outstanding is not None:
                outstanding.discard(str(body.get("messageId", "")))
                self._count("acks")
            elif kind in _TCS_ACKS:
                ws.send_text(message(_TCS_ACKS[kind], {"message": "ok"}))

    def _count(self, key: str) -> None:
        with self._lock:
            self._counts[key] += 1

    def _owners(self) -> dict[tuple[str, str], list[WebSocket]]:
        """Open ACS sockets grouped by (ARN, owning host); caller holds the lock."""
        out: dict[tuple[str, str], list[WebSocket]] = {}
        for arn, socks in self._open[ACS].items():
            for ws in socks:
                out.setdefault((arn, self._owner_of.get(id(ws), "")), []).append(ws)
        return out


def _flat(table: dict[str, list[WebSocket]]) -> list[WebSocket]:
    return [ws for socks in table.values() for ws in socks]
