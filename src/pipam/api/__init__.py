"""The REST API in the OpenStack Networking v2.0 wire format."""
