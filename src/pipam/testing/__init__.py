"""Helpers shared by Pipam's tests, its benchmarks and third-party drivers' tests.

``pipam.testing.contract`` is the driver contract suite (needs pytest); ``pipam.testing.databases``
makes scratch databases (no test framework needed, so benchmarks can use it).
"""
