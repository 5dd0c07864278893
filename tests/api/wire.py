"""Helpers for wire-format tests."""

from __future__ import annotations

from typing import Any

import httpx
import netaddr


def ok(resp: httpx.Response, status: int = 200) -> Any:
    assert resp.status_code == status, resp.text
    return resp.json() if resp.content else None


def err(resp: httpx.Response, status: int, etype: str | None = None) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    body = resp.json()["NeutronError"]
    assert set(body) == {"type", "message", "detail"}
    if etype is not None:
        assert body["type"] == etype, body
    return body


def mk(api: httpx.Client, singular: str, **body: Any) -> dict[str, Any]:
    return ok(api.post(f"/v2.0/{singular}s", json={singular: body}), 201)[singular]


def eui64(prefix: str, mac: str) -> str:
    """The address SLAAC gives ``mac`` on the /64 ``prefix`` (what a port on such a subnet shows)."""
    return str(netaddr.EUI(mac).ipv6(netaddr.IPNetwork(prefix).first))
