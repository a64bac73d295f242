"""The SDK's model methods (runyard.Client) against a real server: keys, metrics, rollback's refusal,
and predict's answer for a model that has no URL yet."""

from __future__ import annotations

import pytest
from tests.models_api.models_api_support import apply_model
from tests.support import ServerProcess

from runyard.client import Client
from runyard.core.errors import Conflict, NotFound, Unauthorized


def test_the_client_manages_keys_and_reads_metrics(srv: ServerProcess):
    apply_model(srv, "sdk")
    with Client(srv.url, srv.token) as client:
        made = client.create_model_key("sdk", "notebook")
        assert made["key"].startswith("rym_") and made["description"] == "notebook"
        assert [k["id"] for k in client.model_keys("sdk")] == [made["id"]]
        client.revoke_model_key("sdk", made["id"])
        assert client.model_keys("sdk") == []
        with pytest.raises(NotFound, match="no key"):
            client.revoke_model_key("sdk", made["id"])
        assert client.model_metrics("sdk")["model"] == "sdk"
        with pytest.raises(Conflict, match="no version 7"):
            client.rollback("sdk", 7)
        with pytest.raises(NotFound, match="'ghost'"):
            client.model_metrics("ghost")
    with Client(srv.url, "ryd_wrong") as stranger, pytest.raises(Unauthorized):
        stranger.model_keys("sdk")
