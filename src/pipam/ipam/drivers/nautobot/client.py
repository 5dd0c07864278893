"""A thin client for the parts of Nautobot's REST API (``/api/ipam/...``, ``/api/extras/...``) an IPAM driver needs.

Built on ``httpx`` rather than ``pynautobot`` because a driver needs four things pynautobot leaves to its
caller: a timeout on every call (pynautobot has none, so a hung Nautobot hangs the request forever),
transport failures told apart from answers (pynautobot lets ``requests`` exceptions through unwrapped),
no hidden calls (its records fetch full details on attribute access), and no retried POSTs (its
``retries`` option retries allocations on 500, which can allocate twice).

Every failure is one of the exceptions below, so that the driver can map it to an API answer:
:class:`Unavailable` (503), :class:`Conflict`, :class:`NotFound`, :class:`PrefixFull`, or
:class:`NautobotError` for anything else (a bug or a misconfiguration: bad token, missing status...).
Objects are returned as Nautobot's JSON, typed with the fields this module relies on.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any, NotRequired, TypedDict

import httpx

JSON = dict[str, Any]

# --- what Nautobot returns (only the fields Pipam reads; Nautobot sends more) -----------------------


class Ref(TypedDict):
    """A related object, as Nautobot 2+ nests it at depth 0."""

    id: str
    object_type: str
    url: str


class Prefix(TypedDict):
    id: str
    prefix: str  # "10.0.0.0/29"
    namespace: Ref
    status: Ref
    type: dict[str, str]  # {"value": "network" | "container" | "pool", "label": ...}
    custom_fields: dict[str, Any]


class IpAddress(TypedDict):
    id: str
    address: str  # "10.0.0.1/29": host and the mask length it was created with
    host: str  # "10.0.0.1"
    mask_length: int
    parent: Ref  # the closest containing Prefix, chosen by Nautobot within the namespace
    status: Ref
    description: str
    tags: list[Ref]
    custom_fields: dict[str, Any]
    role: NotRequired[Ref | None]


# --- errors ---------------------------------------------------------------------------------------


class NautobotError(Exception):
    """Nautobot refused a request, or answered something this client does not understand."""

    def __init__(self, message: str, status: int | None = None, body: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.body = body


class Unavailable(NautobotError):
    """Nautobot did not answer in time, could not be reached, or is in trouble (try again later: 503).

    "In trouble": a 502-504, or a 500 for a lost database or Redis or an allocation lock not had in time.

    ``maybe_applied`` is True when the request may have reached Nautobot and been carried out before the
    failure (a timeout or a dropped connection after sending): the caller cannot tell whether a write
    happened and has to look before it retries.
    """

    def __init__(self, message: str, status: int | None = None, body: Any = None, *, maybe_applied: bool) -> None:
        super().__init__(message, status, body)
        self.maybe_applied = maybe_applied


class Conflict(NautobotError):
    """400 saying the object "already exists" (for an ip-address: same parent prefix and host)."""


class NotFound(NautobotError):
    """404: no such object (or not visible to this token)."""


class PrefixFull(NautobotError):
    """``available-ips`` answered 204: the prefix (or the requested range) has no free address left."""


def _messages(body: Any) -> Iterator[str]:
    """Every error string in a DRF error body: nested dicts and lists (bulk requests answer one per object)."""
    if isinstance(body, str):
        yield body
    elif isinstance(body, dict):
        for value in body.values():
            yield from _messages(value)
    elif isinstance(body, list):
        for value in body:
            yield from _messages(value)


# Exceptions behind a 500 that say "later", not "never": the allocation lock not had within 5 s, the
# database or Redis gone.
_TRANSIENT = {"LockError", "OperationalError", "InterfaceError", "ConnectionError", "TimeoutError"}


def _transient(body: Any) -> bool:
    """Whether a 5xx answer is an outage rather than a Nautobot bug.

    Errors raised inside an API view come as JSON naming the exception; one raised before it (e.g. by a
    middleware that cannot reach the database) comes as Nautobot's HTML error page; a proxy's 502-504
    are neither.
    """
    if isinstance(body, dict) and "exception" in body:
        return str(body["exception"]).rsplit(".", 1)[-1].strip("'>") in _TRANSIENT
    return True


class NautobotClient:
    """One keep-alive connection pool to one Nautobot, authenticated with an API token.

    ``timeout`` bounds every call (connect, each read, each write); past it :class:`Unavailable` is
    raised. Safe to share between threads (httpx.Client is).
    """

    def __init__(
        self,
        url: str,
        token: str,
        *,
        timeout: float = 10.0,
        verify: bool | str = True,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.http = httpx.Client(
            base_url=url.rstrip("/") + "/api/",
            headers={"Authorization": f"Token {token}", "Accept": "application/json"},
            timeout=timeout,
            verify=verify,
            transport=transport,
        )

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> NautobotClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- transport and error classification ------------------------------------------------------

    def request(
        self, method: str, path: str, *, params: Any = None, body: Any = None, headers: dict[str, str] | None = None
    ) -> httpx.Response:
        """Send one request; returns a 2xx response, raises one of this module's errors otherwise."""
        try:
            response = self.http.request(method, path, params=params, json=body, headers=headers)
        except httpx.ConnectError as exc:  # includes a refused connection: nothing was sent
            raise Unavailable(f"{method} {path}: cannot connect: {exc}", maybe_applied=False) from exc
        except httpx.ConnectTimeout as exc:
            raise Unavailable(f"{method} {path}: connect timed out", maybe_applied=False) from exc
        except httpx.TransportError as exc:  # read/write timeout, connection dropped mid-request
            raise Unavailable(
                f"{method} {path}: {type(exc).__name__}: {exc}", maybe_applied=method not in ("GET", "HEAD")
            ) from exc
        if response.is_success:
            return response
        raise self._error(method, path, response)

    @staticmethod
    def _error(method: str, path: str, response: httpx.Response) -> NautobotError:
        status = response.status_code
        try:
            body: Any = response.json()
        except json.JSONDecodeError:
            body = response.text[:2000]
        message = f"{method} {path}: {status}: {str(body)[:2000]}"
        if status == 404:
            return NotFound(message, status, body)
        if status in (400, 500) and any("already exists" in m for m in _messages(body)):
            # 400: Nautobot's validation saw the other address. 500: it did not, because the other was
            # created concurrently (PostgreSQL's IntegrityError on the (parent, host) unique constraint,
            # "Key ... already exists"), or because one bulk create names the address twice (a
            # ValidationError at save time). Either way nothing of the request was written.
            return Conflict(message, status, body)
        if status >= 500 and _transient(body):
            # Nautobot writes inside a transaction that an error rolls back: an answered 5xx changed nothing.
            return Unavailable(message, status, body, maybe_applied=False)
        return NautobotError(message, status, body)

    @staticmethod
    def _json(response: httpx.Response) -> Any:
        try:
            return response.json()
        except json.JSONDecodeError as exc:  # e.g. a login page: the URL does not point at Nautobot's API
            raise NautobotError(
                f"{response.request.url}: not JSON: {response.text[:200]!r}", response.status_code
            ) from exc

    def _get(self, path: str, **params: Any) -> JSON:
        result: JSON = self._json(self.request("GET", path, params=params or None))
        return result

    def _one(self, path: str, **params: Any) -> JSON | None:
        """The single object a unique filter selects, or None."""
        results = self._get(path, **params)["results"]
        if len(results) > 1:
            raise NautobotError(f"GET {path} {params}: {len(results)} objects, expected at most one")
        return results[0] if results else None

    def _create(self, path: str, body: JSON | Sequence[JSON]) -> Any:
        return self._json(self.request("POST", path, body=body))

    def paginate(self, path: str, page_size: int = 1000, **params: Any) -> Iterator[JSON]:
        """Every object a list endpoint returns, following ``next`` links (limit/offset pages)."""
        page = self._get(path, limit=page_size, **params)
        yield from page["results"]
        while page.get("next"):
            # The link is absolute and carries the filters and the next offset.
            page = self._json(self.request("GET", page["next"]))
            yield from page["results"]

    # --- server ----------------------------------------------------------------------------------

    def status(self) -> JSON:
        """``/api/status/``: versions and health. Takes a second: Nautobot asks Celery workers to answer first."""
        return self._get("status/")

    # --- lookups (ids of the objects Pipam's addresses refer to) ----------------------------------

    def namespace(self, name: str = "Global") -> JSON:
        found = self._one("ipam/namespaces/", name=name)
        if found is None:
            raise NotFound(f"no namespace {name!r}")
        return found

    def create_namespace(self, name: str) -> JSON:
        created: JSON = self._create("ipam/namespaces/", {"name": name})
        return created

    def status_id(self, name: str = "Active") -> str:
        found = self._one("extras/statuses/", name=name)
        if found is None:
            raise NotFound(f"no status {name!r}")
        return str(found["id"])

    def ensure_role(self, name: str, content_types: Sequence[str] = ("ipam.ipaddress",)) -> str:
        return self._ensure("extras/roles/", {"name": name, "content_types": list(content_types)})

    def ensure_tag(self, name: str, content_types: Sequence[str] = ("ipam.ipaddress", "ipam.prefix")) -> str:
        return self._ensure("extras/tags/", {"name": name, "content_types": list(content_types)})

    def ensure_custom_field(
        self, key: str, label: str, content_types: Sequence[str] = ("ipam.ipaddress", "ipam.prefix")
    ) -> str:
        """A text custom field (Pipam keeps its ids in these); filterable as ``cf_<key>=``."""
        body = {"key": key, "label": label, "type": "text", "content_types": list(content_types)}
        return self._ensure("extras/custom-fields/", body, lookup={"key": key})

    def _ensure(self, path: str, body: JSON, lookup: JSON | None = None) -> str:
        """Id of the object ``lookup`` (default: named ``body["name"]``) selects; created from ``body`` if missing."""
        lookup = lookup or {"name": body["name"]}

        def find() -> JSON | None:
            if "key" in lookup:  # custom fields cannot be filtered by key: there are few, scan them
                return next((f for f in self.paginate(path) if f["key"] == lookup["key"]), None)
            return self._one(path, **lookup)

        found = find()
        if found is None:
            try:
                return str(self._create(path, body)["id"])
            except Conflict:  # another Pipam server made it meanwhile
                found = find()
                if found is None:
                    raise
        return str(found["id"])

    # --- prefixes --------------------------------------------------------------------------------

    def get_prefix(self, prefix_id: str) -> Prefix:
        found: Prefix = self._get(f"ipam/prefixes/{prefix_id}/")  # type: ignore[assignment]
        return found

    def find_prefix(self, prefix: str, namespace_id: str) -> Prefix | None:
        """The prefix with exactly this network in the namespace (``prefix=`` is an exact match)."""
        found = self._one("ipam/prefixes/", prefix=prefix, namespace=namespace_id)
        return found  # type: ignore[return-value]

    def create_prefix(self, prefix: str, namespace_id: str, status_id: str, **fields: Any) -> Prefix:
        body = {"prefix": prefix, "namespace": namespace_id, "status": status_id, **fields}
        created: Prefix = self._create("ipam/prefixes/", body)
        return created

    def prefixes(self, namespace_id: str, page_size: int = 1000, **filters: Any) -> Iterator[Prefix]:
        """Every prefix of the namespace that ``filters`` select, page by page."""
        yield from self.paginate("ipam/prefixes/", page_size, namespace=namespace_id, **filters)  # type: ignore[misc]

    def update_prefix(self, prefix_id: str, **fields: Any) -> Prefix:
        updated: Prefix = self._json(self.request("PATCH", f"ipam/prefixes/{prefix_id}/", body=fields))
        return updated

    def bulk_update_prefixes(self, changes: Sequence[JSON]) -> None:
        """PATCH many prefixes in one request (each change names its ``id``)."""
        if changes:
            self.request("PATCH", "ipam/prefixes/", body=list(changes))

    def bulk_delete_prefixes(self, prefix_ids: Sequence[str]) -> None:
        if prefix_ids:
            self.request("DELETE", "ipam/prefixes/", body=[{"id": i} for i in prefix_ids])

    def delete_prefix(self, prefix_id: str) -> None:
        """Delete a prefix; one still holding ip-addresses is refused (a NautobotError with status 409)."""
        self.request("DELETE", f"ipam/prefixes/{prefix_id}/")

    # --- ip-addresses ----------------------------------------------------------------------------

    def allocate_next(
        self,
        prefix_id: str,
        status_id: str,
        *,
        count: int = 1,
        start: str | None = None,
        end: str | None = None,
        **fields: Any,
    ) -> list[IpAddress]:
        """The ``count`` lowest free addresses of the prefix (within ``start``-``end`` inclusive, if given).

        Nautobot picks them, adds the prefix's mask length and namespace, and creates them all or none.
        Not safe against concurrent callers on the same prefix (Nautobot computes the free set before
        taking its lock: nautobot#8297): a lost race is a :class:`Conflict`, to be retried.
        """
        params = {k: v for k, v in (("range_start", start), ("range_end", end)) if v is not None}
        body = [{"status": status_id, **fields} for _ in range(count)]
        # Connection: close, because Nautobot's 204 carries a body (its "insufficient addresses" detail)
        # that a 204 must not have: a client that reuses the connection reads those bytes as the start of
        # the next response (httpx: RemoteProtocolError "illegal status line" on the next call).
        response = self.request(
            "POST",
            f"ipam/prefixes/{prefix_id}/available-ips/",
            params=params,
            body=body,
            headers={"Connection": "close"},
        )
        if response.status_code == 204:  # a success code, but Nautobot's "no room"
            raise PrefixFull(f"prefix {prefix_id}: fewer than {count} free addresses", 204)
        created: list[IpAddress] = self._json(response)
        return created

    def create_ip(self, address: str, namespace_id: str, status_id: str, **fields: Any) -> IpAddress:
        """One specific address (``"10.0.0.5/29"``); :class:`Conflict` if its parent already holds it."""
        created: IpAddress = self._create(
            "ipam/ip-addresses/", {"address": address, "namespace": namespace_id, "status": status_id, **fields}
        )
        return created

    def bulk_create_ips(self, addresses: Sequence[JSON]) -> list[IpAddress]:
        """Create many ip-addresses in one request (each a body as for :meth:`create_ip`)."""
        created: list[IpAddress] = self._create("ipam/ip-addresses/", list(addresses))
        return created

    def find_ip(self, prefix_id: str, host: str) -> IpAddress | None:
        """The ip-address ``host`` whose parent is this prefix, or None."""
        found = self._one("ipam/ip-addresses/", parent=prefix_id, address=host)
        return found  # type: ignore[return-value]

    def update_ip(self, ip_id: str, **fields: Any) -> IpAddress:
        updated: IpAddress = self._json(self.request("PATCH", f"ipam/ip-addresses/{ip_id}/", body=fields))
        return updated

    def bulk_update_ips(self, changes: Sequence[JSON]) -> None:
        """PATCH many ip-addresses in one request (each change names its ``id``)."""
        if changes:
            self.request("PATCH", "ipam/ip-addresses/", body=list(changes))

    def ips(self, namespace_id: str, page_size: int = 1000, **filters: Any) -> Iterator[IpAddress]:
        """Every ip-address of the namespace that ``filters`` select, page by page."""
        yield from self.paginate("ipam/ip-addresses/", page_size, namespace=namespace_id, **filters)  # type: ignore[misc]

    def delete_ip(self, ip_id: str) -> None:
        self.request("DELETE", f"ipam/ip-addresses/{ip_id}/")

    def bulk_delete_ips(self, ip_ids: Sequence[str]) -> None:
        """Delete many ip-addresses in one request; ids that do not exist are ignored (Nautobot answers 204)."""
        if ip_ids:
            self.request("DELETE", "ipam/ip-addresses/", body=[{"id": i} for i in ip_ids])

    def ips_of_prefix(self, prefix_id: str, page_size: int = 1000, **filters: Any) -> Iterator[IpAddress]:
        """Every ip-address whose parent is this prefix, page by page."""
        yield from self.paginate("ipam/ip-addresses/", page_size, parent=prefix_id, **filters)  # type: ignore[misc]
