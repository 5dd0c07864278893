"""The core tables: the truth about networks, subnets, ports and which port holds which address."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    select,
)
from sqlalchemy.orm import Mapped, column_property, mapped_column, relationship

from pipam.db.base import Base, new_id, utcnow

ID = String(36)
IP = String(64)
# Free-range keys: the address as 32 lower-case hex digits, so string order is numeric order.
KEY = String(32)
# Column.info key: the read-only views (``pipam.service.views``) read the column as the driver gives it.
READ_AS_TEXT = "read_as_text"


class StandardAttrs:
    """Columns every API resource carries."""

    id: Mapped[str] = mapped_column(ID, primary_key=True, default=new_id)
    project_id: Mapped[str] = mapped_column(String(255), default="", index=True)
    name: Mapped[str] = mapped_column(String(255), default="")
    description: Mapped[str] = mapped_column(String(255), default="")
    # Views read it as stored: rendering parses it (``Tags``), and skips an empty list's text.
    tags: Mapped[list[str]] = mapped_column(JSON, default=list, info={READ_AS_TEXT: True})
    revision_number: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class AddressScope(Base):
    """A set of subnet pools whose prefixes do not overlap (Neutron's address-scope extension).

    Not a standard-attribute resource in Neutron: no description, tags, revisions or timestamps.
    """

    __tablename__ = "address_scopes"

    id: Mapped[str] = mapped_column(ID, primary_key=True, default=new_id)
    project_id: Mapped[str] = mapped_column(String(255), default="", index=True)
    name: Mapped[str] = mapped_column(String(255), default="")
    shared: Mapped[bool] = mapped_column(Boolean, default=False)
    ip_version: Mapped[int] = mapped_column(Integer)


class Network(StandardAttrs, Base):
    __tablename__ = "networks"

    admin_state_up: Mapped[bool] = mapped_column(Boolean, default=True)
    shared: Mapped[bool] = mapped_column(Boolean, default=False)
    status: Mapped[str] = mapped_column(String(16), default="ACTIVE")
    mtu: Mapped[int] = mapped_column(Integer, default=1500)
    router_external: Mapped[bool] = mapped_column(Boolean, default=False)

    # What a network shows, loaded when it is shown (lists load them for a page at once, see the
    # resource's ``eager``; a show joins them, its ``joined``), not when a port or a subnet merely looks
    # its network up. Its subnets' ids, versions and address scopes, without loading the subnets.
    subnet_ids: Mapped[list[SubnetId]] = relationship(
        viewonly=True, order_by="SubnetId.id", primaryjoin="Network.id == foreign(SubnetId.network_id)"
    )


class SubnetPool(StandardAttrs, Base):
    __tablename__ = "subnetpools"
    __table_args__ = (Index("uq_subnetpools_default_ip_version", "default_ip_version", unique=True),)

    ip_version: Mapped[int] = mapped_column(Integer)
    default_prefixlen: Mapped[int] = mapped_column(Integer)
    min_prefixlen: Mapped[int] = mapped_column(Integer)
    max_prefixlen: Mapped[int] = mapped_column(Integer)
    shared: Mapped[bool] = mapped_column(Boolean, default=False)
    is_default: Mapped[bool] = mapped_column(Boolean, default=False)
    # ip_version while is_default, else NULL: the unique index keeps one default pool per IP version
    # even when two servers mark pools default at the same moment.
    default_ip_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    default_quota: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # An address scope's id; not a foreign key (see Alembic revision 0004): the service keeps it valid.
    address_scope_id: Mapped[str | None] = mapped_column(ID, nullable=True, index=True)

    prefixes: Mapped[list[SubnetPoolPrefix]] = relationship(
        cascade="all, delete-orphan", order_by="SubnetPoolPrefix.cidr", lazy="selectin"
    )


class PoolScope(Base):
    """A second, read-only mapping of ``subnetpools``: the IP version and address scope of a pool."""

    __table__ = SubnetPool.__table__
    __mapper_args__ = {"include_properties": ["id", "ip_version", "address_scope_id"]}


class SubnetPoolPrefix(Base):
    __tablename__ = "subnetpoolprefixes"

    subnetpool_id: Mapped[str] = mapped_column(ID, ForeignKey("subnetpools.id", ondelete="CASCADE"), primary_key=True)
    cidr: Mapped[str] = mapped_column(IP, primary_key=True)


class Subnet(StandardAttrs, Base):
    __tablename__ = "subnets"

    network_id: Mapped[str] = mapped_column(ID, ForeignKey("networks.id"), index=True)
    ip_version: Mapped[int] = mapped_column(Integer)
    cidr: Mapped[str] = mapped_column(IP)
    gateway_ip: Mapped[str | None] = mapped_column(IP, nullable=True)
    enable_dhcp: Mapped[bool] = mapped_column(Boolean, default=True)
    ipv6_ra_mode: Mapped[str | None] = mapped_column(String(16), nullable=True)
    ipv6_address_mode: Mapped[str | None] = mapped_column(String(16), nullable=True)
    subnetpool_id: Mapped[str | None] = mapped_column(ID, ForeignKey("subnetpools.id"), nullable=True, index=True)
    dns_nameservers: Mapped[list[str]] = mapped_column(JSON, default=list)
    host_routes: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)

    allocation_pools: Mapped[list[IPAllocationPool]] = relationship(
        cascade="all, delete-orphan", order_by="IPAllocationPool.first_key", lazy="selectin"
    )


class SubnetId(Base):
    """A second, read-only mapping of ``subnets``: the id, the network, the project (which callers may
    read it), the IP version and the address scope of the pool it came from (a network's address scopes
    are its subnets' pools')."""

    __table__ = Subnet.__table__
    __mapper_args__ = {"include_properties": ["id", "network_id", "project_id", "ip_version", "address_scope_id"]}

    address_scope_id: Mapped[str | None] = column_property(
        select(SubnetPool.address_scope_id)
        .where(SubnetPool.id == Subnet.__table__.c.subnetpool_id)
        .correlate_except(SubnetPool)
        .scalar_subquery()
    )


class IPAllocationPool(Base):
    __tablename__ = "ipallocationpools"

    id: Mapped[str] = mapped_column(ID, primary_key=True, default=new_id)
    subnet_id: Mapped[str] = mapped_column(ID, ForeignKey("subnets.id", ondelete="CASCADE"), index=True)
    first_ip: Mapped[str] = mapped_column(IP)
    last_ip: Mapped[str] = mapped_column(IP)
    first_key: Mapped[str] = mapped_column(KEY)
    last_key: Mapped[str] = mapped_column(KEY)


class Port(StandardAttrs, Base):
    __tablename__ = "ports"
    __table_args__ = (
        UniqueConstraint("network_id", "mac_address", name="uq_ports_network_id_mac"),
        # SQLite keeps the rows in id order, as a page of the list reads them (revision 0006).
        {"sqlite_with_rowid": False},
    )

    network_id: Mapped[str] = mapped_column(ID, ForeignKey("networks.id"), index=True)
    # Indexed alone for a bulk create's check of its drawn MACs (revision 0005).
    mac_address: Mapped[str] = mapped_column(String(32), index=True)
    admin_state_up: Mapped[bool] = mapped_column(Boolean, default=True)
    status: Mapped[str] = mapped_column(String(16), default="DOWN")
    device_id: Mapped[str] = mapped_column(String(255), default="", index=True)
    device_owner: Mapped[str] = mapped_column(String(255), default="")

    fixed_ips: Mapped[list[IPAllocation]] = relationship(
        cascade="all, delete-orphan", lazy="selectin", order_by="IPAllocation.ip_key"
    )


class IPAllocation(Base):
    """Which port holds which address: the truth every backend is checked against."""

    __tablename__ = "ipallocations"
    __table_args__ = (
        Index("ix_ipallocations_subnet_key", "subnet_id", "ip_key"),
        # A port's addresses are read from this index alone, no row of the table (revision 0006).
        Index("ix_ipallocations_port_covering", "port_id", "ip_key", "ip_address", "subnet_id", "network_id"),
    )

    ip_address: Mapped[str] = mapped_column(IP, primary_key=True)
    subnet_id: Mapped[str] = mapped_column(ID, ForeignKey("subnets.id"), primary_key=True)
    ip_key: Mapped[str] = mapped_column(KEY)
    port_id: Mapped[str] = mapped_column(ID, ForeignKey("ports.id", ondelete="CASCADE"))
    network_id: Mapped[str] = mapped_column(ID, index=True)


class IPAvailabilityRange(Base):
    """The builtin backend's own state: free address ranges per allocation pool."""

    __tablename__ = "ipavailabilityranges"
    __table_args__ = (
        Index("ix_ipavailabilityranges_owner_last", "subnet_id", "last_key"),
        Index("ix_ipavailabilityranges_owner_first", "subnet_id", "first_key"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    subnet_id: Mapped[str] = mapped_column(ID)
    pool_id: Mapped[str] = mapped_column(ID)
    first_key: Mapped[str] = mapped_column(KEY)
    last_key: Mapped[str] = mapped_column(KEY)


class IpamState(Base):
    """One row: the backend that is active, the backend a migration is filling, and the fence.

    ``pipam.ipam.state`` is the only code that reads or writes it (and the gate below).
    """

    __tablename__ = "ipam_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    active_backend: Mapped[str] = mapped_column(String(64))
    # While a migration copies into another backend, address changes are journalled for it.
    shadow_backend: Mapped[str | None] = mapped_column(String(64), nullable=True)
    fence_migration_id: Mapped[str | None] = mapped_column(ID, nullable=True)
    fence_reason: Mapped[str | None] = mapped_column(String(255), nullable=True)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class IpamGate(Base):
    """Slots every address change writes one of, each carrying a copy of the IPAM state.

    A change writes a random slot and reads the state from it in the same statement; a state change
    (fence, switch, journal on/off) writes every slot. So the two always conflict, on one database
    server (row locks: the state change waits for changes in flight) and on a multi-master cluster
    (write-set certification), while concurrent changes rarely touch the same slot.
    """

    __tablename__ = "ipam_gate"

    slot: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    touches: Mapped[int] = mapped_column(BigInteger, default=0)
    active_backend: Mapped[str] = mapped_column(String(64))
    shadow_backend: Mapped[str | None] = mapped_column(String(64), nullable=True)
    fence_migration_id: Mapped[str | None] = mapped_column(ID, nullable=True)


class IpamMigration(Base):
    """One operator-run migration: its owner's lease, progress checkpoint and outcome."""

    __tablename__ = "ipam_migrations"

    id: Mapped[str] = mapped_column(ID, primary_key=True, default=new_id)
    source: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))  # running, completed, aborted, failed
    phase: Mapped[str] = mapped_column(String(32), default="preflight")
    # Last core subnet id fully copied into the target: re-running resumes after it.
    checkpoint: Mapped[str | None] = mapped_column(ID, nullable=True)
    subnets_done: Mapped[int] = mapped_column(Integer, default=0)
    allocations_done: Mapped[int] = mapped_column(Integer, default=0)
    options: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    report: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    started_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    # The process running it ("host:pid:nonce") and when it last renewed its lease (database clock).
    owner: Mapped[str | None] = mapped_column(String(255), nullable=True)
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)


class IpamChange(Base):
    """An address change made while a migration copies: replayed into the target before the switch."""

    __tablename__ = "ipam_changes"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True)
    subnet_id: Mapped[str] = mapped_column(ID, index=True)
    # None: the subnet itself changed (created, pools updated, deleted).
    ip_address: Mapped[str | None] = mapped_column(IP, nullable=True)


class SubnetPoolFreeBlock(Base):
    """Free address space of a subnet pool: a prefix request is one index lookup, not a scan of subnets.

    ``max_block`` is the host-bit count of the largest aligned block that fits in the range.
    """

    __tablename__ = "subnetpool_free_blocks"
    __table_args__ = (
        Index("ix_subnetpool_free_blocks_fit", "subnetpool_id", "max_block", "first_key"),
        Index("ix_subnetpool_free_blocks_first", "subnetpool_id", "first_key"),
        Index("ix_subnetpool_free_blocks_last", "subnetpool_id", "last_key"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    subnetpool_id: Mapped[str] = mapped_column(ID, ForeignKey("subnetpools.id", ondelete="CASCADE"))
    first_key: Mapped[str] = mapped_column(KEY)
    last_key: Mapped[str] = mapped_column(KEY)
    max_block: Mapped[int] = mapped_column(Integer)
