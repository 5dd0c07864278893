"""The reference driver's own tables: its own copy of subnets, pools and allocations."""

from __future__ import annotations

from sqlalchemy import ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from pipam.db.base import Base, new_id
from pipam.db.models import ID, IP, KEY


class IpamSubnet(Base):
    __tablename__ = "ipam_subnets"

    id: Mapped[str] = mapped_column(ID, primary_key=True, default=new_id)
    # The core subnet this mirrors; no foreign key, so the driver's data can outlive it as stale data.
    subnet_id: Mapped[str] = mapped_column(ID, unique=True)
    cidr: Mapped[str] = mapped_column(IP)
    ip_version: Mapped[int] = mapped_column(Integer)


class IpamAllocationPool(Base):
    __tablename__ = "ipam_allocation_pools"

    id: Mapped[str] = mapped_column(ID, primary_key=True, default=new_id)
    ipam_subnet_id: Mapped[str] = mapped_column(ID, ForeignKey("ipam_subnets.id", ondelete="CASCADE"), index=True)
    first_ip: Mapped[str] = mapped_column(IP)
    last_ip: Mapped[str] = mapped_column(IP)
    first_key: Mapped[str] = mapped_column(KEY)
    last_key: Mapped[str] = mapped_column(KEY)


class IpamAvailabilityRange(Base):
    __tablename__ = "ipam_availability_ranges"
    __table_args__ = (
        Index("ix_ipam_availability_ranges_owner_last", "ipam_subnet_id", "last_key"),
        Index("ix_ipam_availability_ranges_owner_first", "ipam_subnet_id", "first_key"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    ipam_subnet_id: Mapped[str] = mapped_column(ID, ForeignKey("ipam_subnets.id", ondelete="CASCADE"))
    pool_id: Mapped[str] = mapped_column(ID)
    first_key: Mapped[str] = mapped_column(KEY)
    last_key: Mapped[str] = mapped_column(KEY)


class IpamAllocation(Base):
    __tablename__ = "ipam_allocations"

    ipam_subnet_id: Mapped[str] = mapped_column(ID, ForeignKey("ipam_subnets.id", ondelete="CASCADE"), primary_key=True)
    ip_address: Mapped[str] = mapped_column(IP, primary_key=True)
    status: Mapped[str] = mapped_column(String(16), default="ALLOCATED")
