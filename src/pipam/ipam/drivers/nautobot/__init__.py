"""IPAM backend on a Nautobot server (``pip install 'pipam[nautobot]'``, ``ipam_driver = "nautobot"``).

``driver.py`` is the driver, ``settings.py`` its ``[drivers.nautobot]`` settings, ``client.py`` the REST client.
"""
