"""The IPAM driver interface, its request types, and the backend registry."""
