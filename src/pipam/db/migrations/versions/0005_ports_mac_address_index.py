"""ports: an index of mac_address, for a bulk create's check of the MACs it drew

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06

A bulk create draws 1,000 random MACs and asks which of them the network's ports already have. Asked
as "network and MAC in the list", PostgreSQL planned with its guess for a table it had no statistics
of (a few rows per network): it read every port of the network through its index of network_id and
compared each with all 1,000 MACs, so a bulk create took longer the more ports the network had (0.56 ms
a port at 10,000 ports on one network, 2.6 ms at 50,000, in one process). Asked by MAC alone, on an
index of the MAC, no port is read for its network: flat to 60,000 ports without statistics, and flat
at 100,000 with them. Past about 60,000 ports, a PostgreSQL without statistics still read the whole
table, through a generic plan of the prepared statement; the check is now sent unprepared
(``pipam.db.engine.UNPREPARED``; bench/README.md).
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A plain CREATE INDEX: on SQLite a batch "move and copy" of ports would trip over the rows that
    # reference it (see 0004).
    op.create_index("ix_ports_mac_address", "ports", ["mac_address"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_ports_mac_address", table_name="ports")
