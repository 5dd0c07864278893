"""The Nautobot driver: Pipam's subnets are Nautobot prefixes, its addresses Nautobot ip-addresses.

What Pipam keeps in Nautobot (all in the configured namespace):

- a prefix per subnet, with the custom fields ``pipam_subnet_id`` (which subnet uses it) and
  ``pipam_pools`` (the allocation pools, ``first-last`` comma-separated: Nautobot has no ranges of its
  own inside a prefix). A prefix Pipam created carries the tag (setting ``tag``); one that existed before
  and was adopted (``adopt_prefixes``) carries only the custom fields, and is left in place when the
  subnet goes.
- an ip-address per allocated address, with the custom field ``pipam_port_id`` (the port holding it, also
  in the description), the tag, the configured status (and role). Addresses adopted by a migration
  (``--on-conflict adopt``) carry the port id but not the tag.

Nautobot is shared: other systems create addresses in the same prefixes. An address is only ever taken
by creating its ip-address, which Nautobot's unique (parent, host) constraint makes atomic, so Pipam never
hands out an address someone else holds and two Pipam servers never hand out the same one. Nautobot's own
``available-ips`` is not used for that reason (it races: nautobot#8297): the driver picks a free address
itself (at random, to keep concurrent servers apart) and tries another when the create loses a race.

Every change is undone when the request's transaction does not commit (``DriverContext.on_rollback``).
Nautobot down, hung or overloaded: :class:`~pipam.errors.ExternalIpamUnavailable` (503 with Retry-After),
within the ``timeout`` setting.
"""

from __future__ import annotations

import bisect
import contextlib
import functools
import ipaddress
import logging
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

import netaddr
from sqlalchemy import select

from pipam.db.models import IPAllocation, IPAllocationPool, Subnet
from pipam.errors import (
    ExternalIpamError,
    ExternalIpamUnavailable,
    ExternalPrefixInUse,
    InvalidInput,
    InvalidIpForSubnet,
    IpAddressAlreadyAllocated,
    IpAddressGenerationFailure,
    IpamSubnetNotFound,
    TooMuchContention,
)
from pipam.ipam.addr import eui64_address, host_bounds
from pipam.ipam.drivers.nautobot import client as nb
from pipam.ipam.drivers.nautobot.settings import NautobotSettings
from pipam.ipam.interface import (
    AddressRequest,
    AnyAddressRequest,
    AutomaticAddressRequest,
    BulkAddressRequest,
    DriverContext,
    FreeProbe,
    FreeSpace,
    FreeSpaceCheck,
    PreferNextAddressRequest,
    SpecificAddressRequest,
    SpecificSubnetRequest,
    SubnetState,
)

log = logging.getLogger("pipam.ipam.nautobot")
T = TypeVar("T")

CF_SUBNET = "pipam_subnet_id"
CF_POOLS = "pipam_pools"
CF_PORT = "pipam_port_id"
# Objects per bulk request (create, update, delete): each must end within the driver's per-call timeout
# (10 s by default) on a slow Nautobot too. Nautobot validates and saves each object: on the test VM
# 0.08-0.1 s per address Pipam creates (tags, custom fields; a request of 500 took 41-43 s) and about
# 0.05 s per plain create, update or delete (200: 9.3, 9.6, 7.6 s).
BULK = 25


def _in_batches(send: Callable[[list[Any]], object], items: Sequence[Any]) -> None:
    """``send`` the items ``BULK`` at a time: one bulk request each."""
    for start in range(0, len(items), BULK):
        send(list(items[start : start + BULK]))


# --- one connection (and the ids Pipam's objects refer to) per configuration, per process ---------------


@dataclass(frozen=True)
class Site:
    client: nb.NautobotClient
    namespace_id: str
    status_id: str
    tag_id: str
    role_id: str | None


_sites: dict[NautobotSettings, Site] = {}
_sites_lock = threading.Lock()


def site_of(settings: NautobotSettings) -> Site:
    """The client and looked-up ids for ``settings``; custom fields, tag and role are made when missing."""
    with _sites_lock:
        found = _sites.get(settings)
        if found is not None:
            return found
        client = nb.NautobotClient(
            settings.url, settings.token.get_secret_value(), timeout=settings.timeout, verify=settings.verify_tls
        )
        try:
            namespace_id = str(client.namespace(settings.namespace)["id"])
            status_id = client.status_id(settings.status)
            tag_id = client.ensure_tag(settings.tag)
            role_id = client.ensure_role(settings.role) if settings.role else None
            client.ensure_custom_field(CF_SUBNET, "Pipam subnet", ("ipam.prefix",))
            client.ensure_custom_field(CF_POOLS, "Pipam allocation pools", ("ipam.prefix",))
            client.ensure_custom_field(CF_PORT, "Pipam port", ("ipam.ipaddress",))
        except BaseException:
            client.close()
            raise
        found = _sites[settings] = Site(client, namespace_id, status_id, tag_id, role_id)
        return found


class _LaterUndos:
    """Undos that found Nautobot down, tried again every second (for ``UNDO_PATIENCE`` seconds) by one
    daemon thread: an outage shorter than that leaves nothing behind once Nautobot is back. Every undo
    is safe to run late: it deletes an object by its id, or one that carries the failed request's nonce,
    or restores what the failed request changed."""

    def __init__(self) -> None:
        self._pending: list[tuple[float, Callable[[], None]]] = []
        self._cv = threading.Condition()
        self._thread: threading.Thread | None = None

    def run(self, undo: Callable[[], None]) -> None:
        try:
            undo()
        except nb.Unavailable:
            log.warning("Nautobot unavailable while undoing a failed request; retrying in the background")
            with self._cv:
                self._pending.append((time.monotonic() + UNDO_PATIENCE, undo))
                if self._thread is None:
                    self._thread = threading.Thread(target=self._loop, name="nautobot-undo", daemon=True)
                    self._thread.start()
                self._cv.notify()

    def _loop(self) -> None:
        while True:
            with self._cv:
                while not self._pending:
                    self._cv.wait()
                batch, self._pending = self._pending, []
            later = []
            for deadline, undo in batch:
                try:
                    undo()
                except nb.Unavailable:
                    if time.monotonic() < deadline:
                        later.append((deadline, undo))
                    else:
                        log.error("gave up undoing a failed request in Nautobot; 'pipam ipam verify' lists it")
                except Exception:
                    log.exception("undo of a failed request in Nautobot failed")
            if later:
                time.sleep(1)
                with self._cv:
                    self._pending.extend(later)

    def idle(self) -> bool:
        with self._cv:
            return not self._pending


UNDO_PATIENCE = 600.0
later_undos = _LaterUndos()


def _translated(fn: Callable[..., T]) -> Callable[..., T]:
    """Nautobot's failures as Pipam's errors: an outage is a 503, anything else a deployment fault (500)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        try:
            return fn(*args, **kwargs)
        except nb.Unavailable as exc:
            raise ExternalIpamUnavailable(f"Nautobot is unavailable; try again shortly ({exc})") from exc
        except nb.NautobotError as exc:
            raise ExternalIpamError(f"Nautobot refused a request of the nautobot IPAM driver: {exc}") from exc

    return wrapper


# --- values ---------------------------------------------------------------------------------------


def format_pools(pools: Sequence[tuple[Any, Any]]) -> str:
    return ",".join(f"{a}-{b}" for a, b in pools)


def parse_pools(text: str | None) -> list[tuple[str, str]]:
    return [tuple(p.split("-", 1)) for p in (text or "").split(",") if p]  # type: ignore[misc]


def _tag_ids(obj: nb.JSON) -> set[str]:
    return {str(t["id"]) for t in obj.get("tags") or []}


def _cf(obj: nb.JSON, key: str) -> Any:
    return (obj.get("custom_fields") or {}).get(key)


class NautobotSubnet:
    """One subnet's prefix; allocates by creating ip-addresses in it."""

    def __init__(self, driver: NautobotDriver, subnet_id: str, prefix: nb.Prefix) -> None:
        self.driver = driver
        self.subnet_id = subnet_id
        self.prefix = prefix
        self.network = ipaddress.ip_network(prefix["prefix"])
        self.pools = [
            (int(ipaddress.ip_address(a)), int(ipaddress.ip_address(b))) for a, b in parse_pools(_cf(prefix, CF_POOLS))
        ]

    def _ip(self, value: int) -> str:
        return str(netaddr.IPAddress(value, self.network.version))

    # --- one address ---------------------------------------------------------------------------

    def _create(self, host: str, holder: str | None) -> bool:
        """Take ``host`` by creating its ip-address; False when it exists already (someone holds it)."""
        d = self.driver
        nonce = uuid.uuid4().hex[:12]
        try:
            created = d.client.create_ip(
                f"{host}/{self.network.prefixlen}", d.site.namespace_id, d.site.status_id, **d.ip_fields(holder, nonce)
            )
        except nb.Conflict:
            return False
        except nb.Unavailable as exc:
            if exc.maybe_applied:  # sent, no answer: it may exist now; the undo looks before deleting
                d.undo(lambda: self._forget_if_ours(host, nonce))
            raise
        d.undo(lambda: d.delete_ip_quietly(created["id"]))
        return True

    def _forget_if_ours(self, host: str, nonce: str) -> None:
        found = self.driver.find_ip(host)
        if found is not None and self.driver.created(found) and f"[{nonce}]" in (found.get("description") or ""):
            self.driver.delete_ip_quietly(found["id"])

    def _forget_each_if_ours(self, hosts: list[str], nonce: str) -> None:
        for host in hosts:
            self._forget_if_ours(host, nonce)

    def held(self) -> set[int]:
        """Every address Nautobot holds in the prefix, Pipam's and others'."""
        return {
            int(ipaddress.ip_address(ip["host"]))
            for ip in self.driver.client.ips(
                self.driver.site.namespace_id, prefix=str(self.network), exclude_m2m="true"
            )
        }

    def _free(self, exclude: set[int]) -> netaddr.IPSet:
        version = self.network.version
        pools = netaddr.IPSet(
            netaddr.IPRange(netaddr.IPAddress(a, version), netaddr.IPAddress(b, version)) for a, b in self.pools
        )
        taken = netaddr.IPSet(netaddr.IPAddress(v, version) for v in exclude)
        return pools - taken

    @staticmethod
    def _random_in(free: netaddr.IPSet) -> int:
        ranges = list(free.iter_ipranges())
        offset = random.randrange(sum(r.size for r in ranges))
        for r in ranges:
            if offset < r.size:
                return int(r.first) + offset
            offset -= r.size
        raise AssertionError("unreachable")

    def _pick(self, lowest: bool, holder: str | None) -> str:
        """Take one free pool address: the lowest, or one at random; another after each lost race."""
        tried: set[int] = set()
        # "Any": first a blind guess (in a subnet with room, one create and no listing); after a lost race,
        # and always for "lowest", pick among what Nautobot does not hold when asked.
        blind = not lowest
        attempts = self.driver.settings.allocation_attempts
        for attempt in range(attempts):
            free = self._free(tried if blind else self.held() | tried)
            if not free:
                raise IpAddressGenerationFailure(self.subnet_id)
            value = int(free.iter_ipranges().__next__().first) if lowest else self._random_in(free)
            host = self._ip(value)
            if self._create(host, holder):
                return host
            tried.add(value)
            blind = False
            # Spread servers that lost the same race (a growing, jittered pause of a few ms).
            time.sleep(random.uniform(0, 0.002 * min(attempt + 1, 10)))
        raise TooMuchContention(
            f"subnet {self.subnet_id}: {attempts} addresses were taken by others in Nautobot while Pipam tried them"
        )

    @_translated
    def allocate(self, request: AddressRequest) -> list[str]:
        holder = self.driver.context.holder
        if isinstance(request, SpecificAddressRequest | AutomaticAddressRequest):
            address = (
                request.address
                if isinstance(request, SpecificAddressRequest)
                else eui64_address(self.network, request.mac)
            )
            low, high = host_bounds(self.network)
            if address not in self.network or not low <= int(address) <= high:
                raise InvalidIpForSubnet(str(address))
            if not self._create(str(address), holder):
                raise IpAddressAlreadyAllocated(str(address), self.subnet_id)
            return [str(address)]
        if isinstance(request, PreferNextAddressRequest):
            return [self._pick(True, holder)]
        if isinstance(request, AnyAddressRequest):
            return [self._pick(False, holder)]
        if isinstance(request, BulkAddressRequest):
            return self._pick_many(request, holder)
        raise TypeError(f"unknown address request {request!r}")

    def _pick_many(self, request: BulkAddressRequest, holder: str | None) -> list[str]:
        """``request.count`` addresses, each recorded with its own holder; all or none (the engine may try
        another subnet in this transaction, so what a failed bulk created must not stay in Nautobot).

        Drawn and created ``BULK`` at a time, each batch one bulk create (which Nautobot writes
        all or nothing): first blind draws from the pools; after a lost race, draws among what Nautobot
        does not hold when asked. A bulk that asks for more than is free mostly learns it at its first lost
        race, from that listing, before it has created anything; what it did create goes in one bulk
        delete. One address after the other, such a bulk created each address, then looked each up and
        deleted it."""
        holders = [request.holders[i] if i < len(request.holders) else holder for i in range(request.count)]
        got: list[str] = []
        made: list[str] = []  # the ids of what this bulk created
        exclude: set[int] = set()  # what Nautobot held when last asked, and what this bulk took
        lost = 0
        attempts = self.driver.settings.allocation_attempts
        # Undone if the transaction does not commit, with whatever the bulk goes on to create (``made``
        # grows in place), whatever stops it.
        self.driver.undo(functools.partial(_in_batches, self.driver.client.bulk_delete_ips, made))
        try:
            while len(got) < request.count:
                free = self._free(exclude)
                if free.size < request.count - len(got):
                    raise IpAddressGenerationFailure(self.subnet_id)
                values = self._sample(free, min(BULK, request.count - len(got)))
                hosts = [self._ip(v) for v in values]
                created = self._create_batch(hosts, holders[len(got) : len(got) + len(hosts)])
                if created is None:  # one of them is held: ask what Nautobot holds, draw again
                    lost += 1
                    if lost >= attempts:
                        raise TooMuchContention(
                            f"subnet {self.subnet_id}: {attempts} draws of addresses met addresses taken by"
                            " others in Nautobot"
                        )
                    exclude = self.held()
                    time.sleep(random.uniform(0, 0.002 * min(lost, 10)))  # as in ``_pick``
                    continue
                got += hosts
                made += created
                exclude.update(values)
        except (IpAddressGenerationFailure, TooMuchContention):
            # The engine may go on to another subnet and commit: what this bulk made goes now.
            _in_batches(self.driver.client.bulk_delete_ips, made)
            made.clear()
            raise
        return got

    @staticmethod
    def _sample(free: netaddr.IPSet, count: int) -> list[int]:
        """``count`` distinct values of ``free`` at random (``count <= free.size``)."""
        ranges = list(free.iter_ipranges())
        total = free.size
        if total <= 4 * count:  # a small or nearly full pool: drawn from its list, no rejections
            return random.sample([int(v) for r in ranges for v in r], count)
        offsets: set[int] = set()
        while len(offsets) < count:
            offsets.add(random.randrange(total))
        starts, values = [], []
        at = 0
        for r in ranges:
            starts.append(at)
            at += r.size
        for offset in offsets:
            i = bisect.bisect_right(starts, offset) - 1
            values.append(int(ranges[i].first) + offset - starts[i])
        return values

    def _create_batch(self, hosts: list[str], holders: list[str | None]) -> list[str] | None:
        """Create ``hosts`` (``holders[i]`` holding the i-th) with one bulk request: their ids, or None when
        Nautobot holds one of them already (and so created none)."""
        d = self.driver
        nonce = uuid.uuid4().hex[:12]
        bodies = [
            d.ip_body(f"{host}/{self.network.prefixlen}", who, nonce) for host, who in zip(hosts, holders, strict=True)
        ]
        try:
            created = d.client.bulk_create_ips(bodies)
        except nb.Conflict:
            return None
        except nb.Unavailable as exc:
            if exc.maybe_applied:  # sent, no answer: they may exist now; the undo looks before deleting
                d.undo(functools.partial(self._forget_each_if_ours, hosts, nonce))
            raise
        return [ip["id"] for ip in created]

    @_translated
    def deallocate(self, address: str) -> None:
        found = self.driver.find_ip(address)
        if found is not None:
            self.driver.release(found)

    @_translated
    def reconcile(self, address: str, allocated: bool) -> None:
        found = self.driver.find_ip(address)
        if allocated and found is None:
            self._create(address, self.driver.port_of(self.subnet_id, address))
        elif not allocated and found is not None:
            self.driver.release(found)


class NautobotDriver:
    name: ClassVar[str] = "nautobot"
    deprecated: ClassVar[bool] = False
    shared: ClassVar[bool] = True
    settings_model: ClassVar[type[NautobotSettings]] = NautobotSettings
    schema: ClassVar[None] = None
    free_space_check: ClassVar[FreeSpaceCheck] = "probe"
    # ``pipam ipam cleanup nautobot`` may run: purge() deletes only what Pipam created (the tag) and
    # unmarks what it adopted; what others hold stays.
    purges_only_its_own: ClassVar[bool] = True

    def __init__(self, context: DriverContext) -> None:
        self.context = context
        self.session = context.session
        self.settings: NautobotSettings = context.settings
        self._site: Site | None = None
        self._created: dict[str, netaddr.IPSet] = {}

    @property
    def site(self) -> Site:
        if self._site is None:
            self._site = _translated(site_of)(self.settings)
        return self._site

    @property
    def client(self) -> nb.NautobotClient:
        return self.site.client

    def undo(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` if the transaction does not commit; later, in the background, if Nautobot is down."""
        self.context.on_rollback(lambda: later_undos.run(fn))

    # --- what Pipam writes into Nautobot --------------------------------------------------------

    def ip_fields(self, holder: str | None, nonce: str = "") -> dict[str, Any]:
        """An ip-address's fields; ``nonce`` (in the description) tells one request's create from another's."""
        described = f"Pipam port {holder}" if holder else "Pipam"
        fields: dict[str, Any] = {
            "tags": [self.site.tag_id],
            "custom_fields": {CF_PORT: holder},
            "description": f"{described} [{nonce}]" if nonce else described,
        }
        if self.site.role_id:
            fields["role"] = self.site.role_id
        return fields

    def ip_body(self, address: str, holder: str | None, nonce: str = "") -> dict[str, Any]:
        """A bulk create's body for one ip-address (``"10.0.0.5/24"``)."""
        return {
            "address": address,
            "namespace": self.site.namespace_id,
            "status": self.site.status_id,
            **self.ip_fields(holder, nonce),
        }

    def created(self, obj: nb.JSON) -> bool:
        """Whether Pipam created this object (it carries the tag)."""
        return self.site.tag_id in _tag_ids(obj)

    def delete_ip_quietly(self, ip_id: str) -> None:
        with contextlib.suppress(nb.NotFound):
            self.client.delete_ip(ip_id)

    def release(self, ip: nb.IpAddress) -> None:
        """Give back an address Pipam holds: delete it if Pipam created it, unmark it if adopted; others' stay."""
        if self.created(ip):
            self.delete_ip_quietly(ip["id"])
            prefixlen = ip["mask_length"]
            host, holder = ip["host"], _cf(ip, CF_PORT)

            def undo() -> None:
                with contextlib.suppress(nb.Conflict):  # taken meanwhile: verify lists it
                    self.client.create_ip(
                        f"{host}/{prefixlen}", self.site.namespace_id, self.site.status_id, **self.ip_fields(holder)
                    )

            self.undo(undo)
        elif _cf(ip, CF_PORT):
            old = _cf(ip, CF_PORT)
            self.client.update_ip(ip["id"], custom_fields={CF_PORT: None})
            self.undo(lambda: self.client.update_ip(ip["id"], custom_fields={CF_PORT: old}))

    def find_ip(self, host: str) -> nb.IpAddress | None:
        """The ip-address ``host`` in the namespace (one at most: the host decides its parent prefix)."""
        return next(self.client.ips(self.site.namespace_id, address=host), None)

    def port_of(self, subnet_id: str, address: str) -> str | None:
        """The port the core tables say holds ``address`` (for a migration's reconcile)."""
        row = self.session.get(IPAllocation, (address, subnet_id))
        return None if row is None else row.port_id

    # --- prefixes -------------------------------------------------------------------------------

    def _prefix_of(self, subnet_id: str) -> nb.Prefix | None:
        found = list(self.client.prefixes(self.site.namespace_id, **{f"cf_{CF_SUBNET}": subnet_id}))
        return found[0] if found else None

    def _patch_prefix(self, prefix: nb.Prefix, custom_fields: dict[str, Any]) -> nb.Prefix:
        old = {k: _cf(prefix, k) for k in custom_fields}
        updated = self.client.update_prefix(prefix["id"], custom_fields=custom_fields)
        self.undo(lambda: self.client.update_prefix(prefix["id"], custom_fields=old))
        return updated

    def _claim(self, subnet_id: str, cidr: str, pools: str) -> nb.Prefix:
        """The prefix ``cidr`` for this subnet: created, or an existing one taken over where allowed."""
        marks = {CF_SUBNET: subnet_id, CF_POOLS: pools}
        existing = self.client.find_prefix(cidr, self.site.namespace_id)
        if existing is None:
            try:
                created = self.client.create_prefix(
                    cidr,
                    self.site.namespace_id,
                    self.site.status_id,
                    tags=[self.site.tag_id],
                    custom_fields=marks,
                    description=f"Pipam subnet {subnet_id}",
                )
            except nb.Conflict:  # made by someone else meanwhile
                existing = self.client.find_prefix(cidr, self.site.namespace_id)
                if existing is None:
                    raise
            else:
                self.undo(lambda: self._delete_prefix_quietly(created["id"]))
                return created
        claimed = _cf(existing, CF_SUBNET)
        # A claim by a subnet the core no longer has is stale (a lost undo, an earlier database).
        stale = bool(claimed) and claimed != subnet_id and self.session.get(Subnet, claimed) is None
        if claimed and claimed != subnet_id and not stale:
            raise ExternalPrefixInUse(f"Prefix {cidr} is used by Pipam subnet {claimed} in Nautobot already.")
        if not claimed and not self.created(existing) and not self.settings.adopt_prefixes:
            raise ExternalPrefixInUse(
                f"Prefix {cidr} already exists in Nautobot namespace {self.settings.namespace!r}; set "
                "drivers.nautobot.adopt_prefixes = true to let Pipam use it."
            )
        if claimed == subnet_id and _cf(existing, CF_POOLS) == pools:
            return existing
        return self._patch_prefix(existing, marks)

    def _delete_prefix_quietly(self, prefix_id: str) -> None:
        with contextlib.suppress(nb.NotFound):
            self.client.delete_prefix(prefix_id)

    def _subnet(self, subnet_id: str) -> NautobotSubnet:
        prefix = self._prefix_of(subnet_id)
        if prefix is None:
            raise IpamSubnetNotFound(subnet_id, self.name)
        return NautobotSubnet(self, subnet_id, prefix)

    def _refuse_overlap(self, subnet_id: str, cidr: Any) -> None:
        """Nautobot keeps one ip-address per host in a namespace (whichever prefix it is filed under), so
        subnets of different networks that overlap could not each hold the same address as Neutron lets
        them (allow_overlapping_ips): refused as Neutron refuses them when that is off."""
        network = ipaddress.ip_network(str(cidr))
        rows = self.session.execute(
            select(Subnet.cidr).where(Subnet.id != subnet_id, Subnet.ip_version == network.version)
        ).scalars()
        if any(ipaddress.ip_network(other).overlaps(network) for other in rows):
            core = self.session.get(Subnet, subnet_id)
            raise InvalidInput(
                f"Invalid input for operation: Requested subnet with cidr: {network} for network: "
                f"{core.network_id if core else None} overlaps with another subnet."
            )

    @_translated
    def allocate_subnet(self, request: SpecificSubnetRequest) -> NautobotSubnet:
        self._refuse_overlap(request.subnet_id, request.cidr)
        prefix = self._claim(request.subnet_id, str(request.cidr), format_pools(request.allocation_pools))
        return NautobotSubnet(self, request.subnet_id, prefix)

    @_translated
    def get_subnet(self, subnet_id: str) -> NautobotSubnet:
        # The hot path of every allocation, without a call to Nautobot: the CIDR and the pools come from the
        # core tables (written before the driver is called, in this transaction, so never stale), and
        # allocating needs no prefix id (an ip-address finds its parent prefix by its address).
        core = self.session.get(Subnet, subnet_id)
        if core is None:
            raise IpamSubnetNotFound(subnet_id, self.name)
        pools = self.session.execute(
            select(IPAllocationPool.first_ip, IPAllocationPool.last_ip)
            .where(IPAllocationPool.subnet_id == subnet_id)
            .order_by(IPAllocationPool.first_key)
        ).all()
        prefix = {"id": None, "prefix": core.cidr, "custom_fields": {CF_POOLS: format_pools(pools)}}
        return NautobotSubnet(self, subnet_id, prefix)  # type: ignore[arg-type]

    @_translated
    def update_subnet(self, request: SpecificSubnetRequest) -> NautobotSubnet:
        subnet = self._subnet(request.subnet_id)
        pools = format_pools(request.allocation_pools)
        if _cf(subnet.prefix, CF_POOLS) != pools:
            subnet = NautobotSubnet(self, request.subnet_id, self._patch_prefix(subnet.prefix, {CF_POOLS: pools}))
        return subnet

    @_translated
    def remove_subnet(self, subnet_id: str) -> None:
        prefix = self._prefix_of(subnet_id)
        if prefix is None:
            return
        # Addresses an undo could not reach (Nautobot was down) would keep the prefix alive: go with it.
        strays = [
            ip["id"] for ip in self.client.ips(self.site.namespace_id, prefix=prefix["prefix"], tags=self.settings.tag)
        ]
        _in_batches(self.client.bulk_delete_ips, strays)
        if self.created(prefix):
            try:
                self.client.delete_prefix(prefix["id"])
            except nb.NautobotError as exc:
                if exc.status not in (400, 409):
                    raise
                # Others keep addresses in it: leave it to them, unclaimed.
            else:
                cidr, fields = prefix["prefix"], {"tags": [self.site.tag_id], "custom_fields": self._marks(prefix)}
                self.undo(
                    lambda: self.client.create_prefix(cidr, self.site.namespace_id, self.site.status_id, **fields)
                )
                return
        self._patch_prefix(prefix, {CF_SUBNET: None, CF_POOLS: None})

    @staticmethod
    def _marks(prefix: nb.Prefix) -> dict[str, Any]:
        return {CF_SUBNET: _cf(prefix, CF_SUBNET), CF_POOLS: _cf(prefix, CF_POOLS)}

    # --- migration support ------------------------------------------------------------------------

    def _claimed_prefixes(self) -> Iterator[nb.Prefix]:
        # A regular expression: "has a value" (an empty filter value would select nothing or everything).
        for prefix in self.client.prefixes(self.site.namespace_id, **{f"cf_{CF_SUBNET}__re": "."}):
            if _cf(prefix, CF_SUBNET):
                yield prefix

    @_translated
    def subnet_ids(self, after: str | None, limit: int) -> list[str]:
        ids = sorted(str(_cf(p, CF_SUBNET)) for p in self._claimed_prefixes())
        return [i for i in ids if after is None or i > after][:limit]

    @_translated
    def dump_subnet(self, subnet_id: str) -> SubnetState | None:
        prefix = self._prefix_of(subnet_id)
        pools: list[tuple[str, str]] = []
        if prefix is None:
            # Not used yet, but a prefix of the subnet's CIDR may exist (and hold others' addresses): what
            # a migration into Nautobot would find there, so that it can list the conflicts.
            core = self.session.get(Subnet, subnet_id)
            if core is None:
                return None
            prefix = self.client.find_prefix(core.cidr, self.site.namespace_id)
            if prefix is None or _cf(prefix, CF_SUBNET):
                return None
        else:
            pools = parse_pools(_cf(prefix, CF_POOLS))
        ips = list(self.client.ips(self.site.namespace_id, prefix=prefix["prefix"]))
        self._created[subnet_id] = netaddr.IPSet(ip["host"] for ip in ips if self.created(ip))
        return SubnetState(subnet_id, prefix["prefix"], pools, netaddr.IPSet(ip["host"] for ip in ips))

    def created_by_pipam(self, subnet_id: str) -> netaddr.IPSet:
        """The addresses of the subnet's prefix Pipam created (tagged), as its last ``dump_subnet`` saw them:
        verify lists those the core does not hold instead of counting them as others' (foreign)."""
        return self._created.get(subnet_id, netaddr.IPSet())

    @_translated
    def import_subnet(self, state: SubnetState, core_allocations: list[str]) -> None:
        """Make the prefix hold the core's allocations: create the missing ones in bulk (with their ports),
        delete those Pipam created that the core no longer has, mark the ones already there with their port
        (others' are adopted; Pipam's own left from an earlier run get their current port)."""
        prefix = self._claim(state.subnet_id, state.cidr, format_pools(state.pools))
        network = ipaddress.ip_network(state.cidr)
        ports = dict(
            self.session.execute(
                select(IPAllocation.ip_address, IPAllocation.port_id).where(IPAllocation.subnet_id == state.subnet_id)
            ).all()
        )
        wanted = {str(ip) for ip in state.allocations}
        present = {ip["host"]: ip for ip in self.client.ips(self.site.namespace_id, prefix=prefix["prefix"])}
        gone = [ip["id"] for host, ip in present.items() if host not in wanted and self.created(ip)]
        _in_batches(self.client.bulk_delete_ips, gone)
        adopt = [
            {"id": ip["id"], "custom_fields": {CF_PORT: ports.get(host)}}
            for host, ip in present.items()
            if host in wanted and _cf(ip, CF_PORT) != ports.get(host)
        ]
        _in_batches(self.client.bulk_update_ips, adopt)
        missing = [a for a in core_allocations if a not in present]
        _in_batches(functools.partial(self._bulk_create, prefix, network, ports=ports), missing)

    def _bulk_create(
        self, prefix: nb.Prefix, network: ipaddress.IPv4Network | ipaddress.IPv6Network, hosts: list[str], ports: dict
    ) -> None:
        bodies = [self.ip_body(f"{h}/{network.prefixlen}", ports.get(h)) for h in hosts]
        try:
            created = self.client.bulk_create_ips(bodies)
        except nb.Conflict:
            # Someone created one of them meanwhile (a bulk create is all or nothing): one by one, and the
            # ones taken are others' now (verify reports them as foreign).
            handle = NautobotSubnet(self, str(_cf(prefix, CF_SUBNET)), prefix)
            for h in hosts:
                handle._create(h, ports.get(h))
            return
        ids = [ip["id"] for ip in created]
        self.undo(lambda: self.client.bulk_delete_ips(ids))

    @_translated
    def counts(self) -> dict[str, int]:
        ns = self.site.namespace_id
        page = self.client._get("ipam/ip-addresses/", namespace=ns, limit=1, **{f"cf_{CF_PORT}__re": "."})
        return {"subnets": sum(1 for _ in self._claimed_prefixes()), "allocations": int(page["count"])}

    @_translated
    def purge(self) -> dict[str, int]:
        """Delete what Pipam created in Nautobot (its tag) and unmark what it adopted; nothing else."""
        c, ns, tag = self.client, self.site.namespace_id, self.settings.tag
        ips = [ip["id"] for ip in c.ips(ns, tags=tag, exclude_m2m="true")]
        _in_batches(c.bulk_delete_ips, ips)
        adopted = [
            {"id": ip["id"], "custom_fields": {CF_PORT: None}}
            for ip in c.ips(ns, exclude_m2m="true", **{f"cf_{CF_PORT}__re": "."})
        ]
        _in_batches(c.bulk_update_ips, adopted)
        prefixes = list(self._claimed_prefixes()) + list(c.prefixes(ns, tags=tag))
        mine = sorted({p["id"] for p in prefixes if self.created(p)})
        kept = []
        for prefix_id in mine:
            try:
                c.delete_prefix(prefix_id)
            except nb.NautobotError as exc:
                if exc.status not in (400, 409):
                    raise
                kept.append(prefix_id)  # others hold addresses in it
        unmark = sorted({p["id"] for p in prefixes if p["id"] in kept or not self.created(p)})
        unmarked = {CF_SUBNET: None, CF_POOLS: None}
        _in_batches(c.bulk_update_prefixes, [{"id": i, "custom_fields": unmarked} for i in unmark])
        return {
            "allocations": len(ips),
            "adopted_allocations_released": len(adopted),
            "subnets": len(mine) - len(kept),
            "prefixes_released": len(unmark),
        }

    # --- free space ---------------------------------------------------------------------------------

    @_translated
    def free_space(self, subnet_ids: Sequence[str]) -> dict[str, FreeSpace]:
        found: dict[str, FreeSpace] = {}
        for sid in subnet_ids:
            prefix = self._prefix_of(sid)
            if prefix is None:
                continue
            subnet = NautobotSubnet(self, sid, prefix)
            free = subnet._free(subnet.held())
            found[sid] = FreeProbe(subnet._ip(int(next(free.iter_ipranges()).first)) if free else None)
        return found
