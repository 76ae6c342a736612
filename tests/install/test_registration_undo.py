"""A run that fails its cluster check removes what it registered: from SSM with the host's own
(self-only) right when it has it, otherwise it names the exact central command."""

from __future__ import annotations

from typing import Any

import botocore.exceptions
import pytest

from anywhere_agent.errors import CloudError
from tests.install.runs import run


def test_missing_cluster_deregisters_what_this_run_registered(node: Any) -> None:
    system, make_ctx, backend = node
    backend.clusters = set()
    with pytest.raises(CloudError) as err:
        run(make_ctx())
    assert backend.deregistered == ["mi-00000000000000001"]
    assert "mi-00000000000000001, registered by this run, deregistered again" in (
        err.value.message)
    assert not (system.root / "var/lib/amazon/ssm/registration").exists()


def test_missing_cluster_names_the_central_command_when_the_host_may_not_deregister(
        node: Any) -> None:
    system, make_ctx, backend = node
    backend.clusters = set()

    def denied(InstanceId: str) -> dict[str, Any]:
        raise botocore.exceptions.ClientError(
            {"Error": {"Code": "AccessDeniedException", "Message": "not authorized"}},
            "DeregisterManagedInstance")

    backend.deregister_managed_instance = denied
    with pytest.raises(CloudError) as err:
        run(make_ctx())
    assert ("`anywhere-agent registrar deregister --region us-east-1 mi-00000000000000001`"
            in err.value.message)
    assert not (system.root / "var/lib/amazon/ssm/registration").exists()
