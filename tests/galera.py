"""The Galera cluster the tests start (shared with bench.galera)."""

from pipam.testing.galera import GaleraCluster

__all__ = ["GaleraCluster"]
