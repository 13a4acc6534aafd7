from __future__ import annotations

import pytest
import responses
from fake_ehr import FakeEhr
from web_helpers import complete_launch, make_app


@pytest.fixture
def rsps():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


@pytest.fixture
def app(tmp_path):
    return make_app(tmp_path)


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def launched(app, client, rsps):
    """The client launched on the fake EHR's example 01 (no retry back-off); the EHR."""
    app.extensions["ivig"].client_options = {"backoff": 0}
    ehr = FakeEhr(rsps)
    assert complete_launch(client, ehr).status_code == 302
    return ehr
