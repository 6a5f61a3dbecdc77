"""`/v1/stream` under another ASGI server (here Starlette's test client): the gateway gets
Starlette's WebSocket, wrapped by transport.AsgiSocket, and speaks the same protocol."""

from __future__ import annotations

import json

import pytest
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from microadjust.app import create_app

from .helpers import DEMO_RULES, hello, hover, ids, make_settings


@pytest.fixture
def client(tmp_path):
    with TestClient(create_app(make_settings(tmp_path, rules_file=DEMO_RULES))) as c:
        yield c


def test_hello_events_ack_and_patch_over_plain_asgi(client):
    vid, sid = ids()
    with client.websocket_connect("/v1/stream?site=demo&v=1", headers={"origin": "http://page.test"}) as ws:
        ws.send_text(json.dumps(hello(vid, sid)))
        welcome = json.loads(ws.receive_text())
        assert welcome["t"] == "welcome" and welcome["sid"] == sid
        ws.send_text(json.dumps({"t": "events", "seq": 1, "events": [hover("p3")]}))
        got = [json.loads(ws.receive_text()) for _ in range(2)]
        assert got[0] == {"t": "ack", "seq": 1}
        assert got[1]["t"] == "patch" and got[1]["patch"]["rule"] == "hover-emphasis"


def test_a_foreign_origin_is_refused_before_accept(client):
    from starlette.testclient import WebSocketDenialResponse

    with pytest.raises(WebSocketDenialResponse) as caught:
        with client.websocket_connect("/v1/stream?site=demo&v=1", headers={"origin": "http://evil.test"}):
            pass
    assert caught.value.status_code == 403 and caught.value.json()["error"] == "origin_not_allowed"


def test_no_hello_in_time_closes_4008(tmp_path):
    with TestClient(create_app(make_settings(tmp_path, hello_timeout_s=0.2))) as client:
        with client.websocket_connect("/v1/stream?site=demo&v=1", headers={"origin": "http://page.test"}) as ws:
            with pytest.raises(WebSocketDisconnect) as caught:
                ws.receive_text()
            assert caught.value.code == 4008
