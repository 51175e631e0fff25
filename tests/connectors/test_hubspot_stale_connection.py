"""A pooled connection the server closes as a request goes out (an idle keep-alive timing out):
a read is sent once more on a fresh connection, a write never (it may have been received; the
activity's retry and the write's key decide), through the official client."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator

import pytest
from pydantic import SecretStr

from connectors.base import ConnectorError
from connectors.hubspot import HubSpotCrm
from domain.settings import HubSpotSettings

COMPANY = {
    "id": "1",
    "properties": {"name": "Initech"},
    "createdAt": "2026-01-01T00:00:00Z",
    "updatedAt": "2026-01-01T00:00:00Z",
    "archived": False,
}


class _DropsFirst:
    """A loopback HTTP server that reads the first request of its first connection and closes it
    without an answer, then answers every later request with COMPANY."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.requests: list[str] = []
        threading.Thread(target=self._serve, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def _serve(self) -> None:
        first = True
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                head = conn.recv(65536).decode("latin-1")
                self.requests.append(head.split("\r\n", 1)[0])
                if first:
                    first = False
                    continue  # closed without a word
                body = json.dumps(COMPANY).encode()
                conn.sendall(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
                    + f"Content-Length: {len(body)}\r\n\r\n".encode()
                    + body
                )


@pytest.fixture
def server() -> Iterator[_DropsFirst]:
    s = _DropsFirst()
    yield s
    s.sock.close()


def _crm(url: str) -> HubSpotCrm:
    return HubSpotCrm(HubSpotSettings(access_token=SecretStr("pat-test"), api_url=url), 5.0)


def test_a_read_is_sent_again_on_a_fresh_connection(server: _DropsFirst) -> None:
    crm = _crm(server.url)
    company = crm._call(crm._companies.get_by_id, "1", what="company")
    assert company.id == "1"
    assert [r.split()[0] for r in server.requests] == ["GET", "GET"]


def test_a_write_is_not_sent_twice(server: _DropsFirst) -> None:
    from hubspot.crm.companies import SimplePublicObjectInputForCreate

    crm = _crm(server.url)
    with pytest.raises(ConnectorError) as err:
        crm._call(
            crm._companies.create,
            SimplePublicObjectInputForCreate(properties={"name": "Initech"}),
            what="company",
        )
    assert "network" in str(err.value)
    assert [r.split()[0] for r in server.requests] == ["POST"]
