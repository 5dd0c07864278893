"""The error catalogue: every error a client or an operator can see, one class per error type.

Clients see ``{"NeutronError": {"type": <class name>, ...}}``, as Neutron names its errors after its
exception classes. The categories below (BadRequest, NotFound, ...) decide the HTTP status, in one
table in ``pipam.api.errors``; raise sites raise a concrete class and never name a type as a string.
"""

from __future__ import annotations


class PipamError(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    @property
    def type(self) -> str:
        return type(self).__name__


# --- categories (the status table in pipam.api.errors maps these) ------------------------------


class BadRequest(PipamError):
    """400. Also a concrete type: Neutron's generic "BadRequest"."""


class NotAuthenticated(PipamError):
    """401."""


class NotAuthorized(PipamError):
    """403."""


class NotFound(PipamError):
    """404. Also a concrete type."""


class Conflict(PipamError):
    """409. Also a concrete type."""


class PreconditionFailed(PipamError):
    """412."""


class TooLarge(PipamError):
    """413."""


class UnsupportedMediaType(PipamError):
    """415."""


class Unavailable(PipamError):
    """503: the request may succeed later; the API adds Retry-After from the settings."""


class ServerError(PipamError):
    """500: a fault of the deployment (a driver that does not load), not of the request."""


# --- 400 -------------------------------------------------------------------------------------------


class HTTPBadRequest(BadRequest):
    """The request's shape is wrong: not JSON, not the expected envelope, unknown attributes."""


class InvalidInput(BadRequest):
    pass


class InvalidIpForSubnet(BadRequest):
    def __init__(self, ip: str) -> None:
        super().__init__(f"IP address {ip} is not a valid IP for the specified subnet.")


class InvalidIpForNetwork(BadRequest):
    pass


class InvalidAllocationPool(BadRequest):
    pass


class OutOfBoundsAllocationPool(BadRequest):
    pass


class IllegalSubnetPoolPrefixBounds(BadRequest):
    pass


class IllegalSubnetPoolPrefixUpdate(BadRequest):
    pass


class MaxPrefixSubnetAllocationError(BadRequest):
    pass


class MinPrefixSubnetAllocationError(BadRequest):
    pass


class IpamUnsupportedRequest(BadRequest):
    pass


class EmptySubnetPoolPrefixList(BadRequest):
    def __init__(self) -> None:
        super().__init__("Empty subnet pool prefix list.")


class PrefixVersionMismatch(BadRequest):
    def __init__(self) -> None:
        super().__init__("Cannot mix IPv4 and IPv6 prefixes in a subnet pool.")


class IllegalSubnetPoolUpdate(BadRequest):
    pass


class IllegalSubnetPoolIpVersionAssociationToAddressScope(BadRequest):
    pass


class NetworkSubnetPoolAffinityError(BadRequest):
    def __init__(self) -> None:
        super().__init__("Subnets hosted on the same network must be allocated from the same subnet pool.")


class NetworkAddressScopeAffinityError(BadRequest):
    def __init__(self) -> None:
        super().__init__(
            "Subnets of the same address family hosted on the same network must all participate in the "
            "same address scope."
        )


class AddressScopeUpdateError(BadRequest):
    pass


# --- 401 / 403 -------------------------------------------------------------------------------------


class HTTPUnauthorized(NotAuthenticated):
    pass


class PolicyNotAuthorized(NotAuthorized):
    pass


# --- 404 -------------------------------------------------------------------------------------------


class HTTPNotFound(NotFound):
    pass


class NetworkNotFound(NotFound):
    pass


class SubnetNotFound(NotFound):
    pass


class PortNotFound(NotFound):
    pass


class SubnetPoolNotFound(NotFound):
    pass


class AddressScopeNotFound(NotFound):
    pass


class IpamSubnetNotFound(NotFound):
    def __init__(self, subnet_id: str, backend: str) -> None:
        super().__init__(f"Subnet {subnet_id} is not known to IPAM backend {backend!r}")


class ExtensionNotFound(NotFound):
    pass


class MarkerNotFound(NotFound):
    pass


class TagNotFound(NotFound):
    pass


# --- 409 -------------------------------------------------------------------------------------------


class IpAddressAlreadyAllocated(Conflict):
    def __init__(self, ip: str, subnet_id: str) -> None:
        super().__init__(f"IP address {ip} already allocated in subnet {subnet_id}")
        self.ip = ip
        self.subnet_id = subnet_id


class IpAddressGenerationFailure(Conflict):
    def __init__(self, network_id: str) -> None:
        super().__init__(f"No more IP addresses available on network {network_id}.")


class SubnetInUse(Conflict):
    pass


class NetworkInUse(Conflict):
    pass


class SubnetPoolInUse(Conflict):
    pass


class MacAddressInUse(Conflict):
    pass


class MacAddressGenerationFailure(Conflict):
    pass


class OverlappingAllocationPools(Conflict):
    pass


class GatewayConflictWithAllocationPools(Conflict):
    pass


class GatewayIpInUse(Conflict):
    pass


class SubnetAllocationError(Conflict):
    pass


class AddressScopePrefixConflict(Conflict):
    def __init__(self) -> None:
        super().__init__(
            "Failed to associate address scope: subnetpools within an address scope must have unique prefixes."
        )


class AddressScopeInUse(Conflict):
    pass


class UnsupportedPortDeviceOwner(Conflict):
    pass


class NetworkMtuSubnetConflict(Conflict):
    """Pipam's own: the network's MTU is below the minimum of a subnet's IP version (68 / 1280)."""


# --- 412 -------------------------------------------------------------------------------------------


class RevisionNumberConstraintFailed(PreconditionFailed):
    def __init__(self, expected: int, current: int) -> None:
        super().__init__(f"Constrained to {expected}, but current revision is {current}")


class ExternalPrefixInUse(Conflict):
    """An outside IPAM already holds the subnet's prefix and the driver may not take it over."""


class MigrationError(Conflict):
    """An operator's migration request cannot go ahead (another run, inconsistent core, ...)."""

    def __init__(self, message: str, report: dict[str, object] | None = None) -> None:
        super().__init__(message)
        self.report = report or {}


# --- 413 / 415 -------------------------------------------------------------------------------------


class HTTPRequestEntityTooLarge(TooLarge):
    pass


class HTTPUnsupportedMediaType(UnsupportedMediaType):
    pass


# --- 503 -------------------------------------------------------------------------------------------


class DatabaseUnavailable(Unavailable):
    def __init__(self, message: str = "The database is unavailable; try again shortly.") -> None:
        super().__init__(message)


class IpamMigrationInProgress(Unavailable):
    pass


class IpamBackendUnavailable(Unavailable):
    """This server cannot allocate through the backend the database records (not installed, or pinned)."""


class TooMuchContention(Unavailable):
    pass


class ExternalIpamUnavailable(Unavailable):
    """An outside IPAM server (Nautobot) did not answer in time, could not be reached, or is in trouble."""


# --- 500 -------------------------------------------------------------------------------------------


class IpamDriverNotFound(ServerError):
    pass


class ExternalIpamError(ServerError):
    """An outside IPAM refused a request Pipam sent it: a misconfiguration (token, status, permissions)."""


class DatabaseNotReady(ServerError):
    """The database has no Pipam schema or no IPAM state: an operator must run 'pipam db upgrade'."""

    def __init__(self, detail: str = "the database has no IPAM state") -> None:
        super().__init__(f"{detail}; run 'pipam db upgrade' first")


# --- internal (never leaves the process) -----------------------------------------------------------


class NotNow(Exception):
    """A change tried on the server's event loop would have to wait (for SQLite's write lock) or reach
    outside the database (an outside IPAM backend): it was rolled back untouched, and runs in the thread
    pool instead."""


class HeldInProcess(NotNow):
    """A change tried on the event loop found this process's write lock taken by another of its changes:
    nothing was begun, and the loop can wait for that change to end (``WriteLock.released``) and try again."""


class RetryTransaction(Exception):
    """A compare-and-swap lost too many races; the whole transaction should run again."""
