"""IPAM backend on a Nautobot server (work in progress: so far the REST client, ``client.py``)."""
