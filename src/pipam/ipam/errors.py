"""Errors a driver raises; the service and the API map them by their ``type``."""

from __future__ import annotations

from pipam.errors import BadRequest, Conflict, NotFound, PipamError


class IpAddressAlreadyAllocated(Conflict):
    type = "IpAddressAlreadyAllocated"

    def __init__(self, ip: str, subnet_id: str) -> None:
        super().__init__(f"IP address {ip} already allocated in subnet {subnet_id}")
        self.ip = ip
        self.subnet_id = subnet_id


class IpAddressGenerationFailure(Conflict):
    type = "IpAddressGenerationFailure"

    def __init__(self, network_id: str) -> None:
        super().__init__(f"No more IP addresses available on network {network_id}.")


class InvalidIpForSubnet(BadRequest):
    type = "InvalidIpForSubnet"

    def __init__(self, ip: str) -> None:
        super().__init__(f"IP address {ip} is not a valid IP for the specified subnet.")


class IpamSubnetNotFound(NotFound):
    type = "IpamSubnetNotFound"

    def __init__(self, subnet_id: str, driver: str) -> None:
        super().__init__(f"Subnet {subnet_id} is not known to IPAM backend {driver!r}")


class UnsupportedRequest(BadRequest):
    type = "IpamUnsupportedRequest"


class DriverNotFound(PipamError):
    type = "IpamDriverNotFound"
    status = 500
