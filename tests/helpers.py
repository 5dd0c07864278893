"""Short calls into the service layer for tests."""

from __future__ import annotations

from typing import Any

from pipam.service import availability, networks, ports, subnetpools, subnets
from pipam.service.database import Database


def net(db: Database, **body: Any) -> dict[str, Any]:
    return db.run(lambda u: networks.create(u, {"name": "net", **body}))


def subnet(db: Database, network_id: str, cidr: str | None = None, **body: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {"network_id": network_id, **body}
    if cidr is not None:
        payload["cidr"] = cidr
        payload.setdefault("ip_version", 6 if ":" in cidr else 4)
    return db.run(lambda u: subnets.create(u, payload))


def port(db: Database, network_id: str, **body: Any) -> dict[str, Any]:
    return db.run(lambda u: ports.create(u, {"network_id": network_id, **body}))


def update_port(db: Database, port_id: str, **body: Any) -> dict[str, Any]:
    return db.run(lambda u: ports.update(u, port_id, body))


def delete_port(db: Database, port_id: str) -> None:
    db.run(lambda u: ports.delete(u, port_id))


def update_subnet(db: Database, subnet_id: str, **body: Any) -> dict[str, Any]:
    return db.run(lambda u: subnets.update(u, subnet_id, body))


def delete_subnet(db: Database, subnet_id: str) -> None:
    db.run(lambda u: subnets.delete(u, subnet_id))


def pool(db: Database, **body: Any) -> dict[str, Any]:
    return db.run(lambda u: subnetpools.create(u, body))


def avail(db: Database, network_id: str) -> dict[str, Any]:
    return db.run(lambda u: availability.show(u, network_id), write=False)


def ips(port_dict: dict[str, Any]) -> list[str]:
    return [f["ip_address"] for f in port_dict["fixed_ips"]]
