"""Address arithmetic: parsing, ordering keys, EUI-64."""

from __future__ import annotations

import ipaddress
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

import netaddr

from pipam.errors import InvalidInput

IPAddress = IPv4Address | IPv6Address
IPNetwork = IPv4Network | IPv6Network


def to_key(value: int | IPAddress | str) -> str:
    """32 hex digits: string order equals numeric order for both IP versions."""
    if isinstance(value, str):
        value = ipaddress.ip_address(value)
    return f"{int(value):032x}"


def from_key(key: str, version: int) -> str:
    return str(int_to_ip(int(key, 16), version))


def int_to_ip(value: int, version: int) -> IPAddress:
    return IPv4Address(value) if version == 4 else IPv6Address(value)


def parse_ip(text: object, what: str = "IP address") -> IPAddress:
    if not isinstance(text, str):
        raise InvalidInput(f"Invalid input: {text!r} is not a valid {what}")
    try:
        return ipaddress.ip_address(text.strip())
    except ValueError:
        raise InvalidInput(f"Invalid input: '{text}' is not a valid {what}") from None


def parse_cidr(text: object) -> IPNetwork:
    """A CIDR with host bits allowed (Neutron normalises ``10.0.0.5/24`` to ``10.0.0.0/24``)."""
    if not isinstance(text, str) or "/" not in text:
        raise InvalidInput(f"Invalid input: '{text}' is not a valid CIDR")
    try:
        return ipaddress.ip_network(text.strip(), strict=False)
    except ValueError:
        raise InvalidInput(f"Invalid input: '{text}' is not a valid CIDR") from None


def host_bounds(net: IPNetwork) -> tuple[int, int]:
    """First and last usable host address (IPv4 drops network and broadcast, except /31 and /32)."""
    first, last = int(net.network_address), int(net.broadcast_address)
    if net.version == 4 and net.prefixlen < 31:
        return first + 1, last - 1
    if net.version == 6 and net.prefixlen < 127:
        # The subnet-router anycast address (all zero host bits) is not handed out.
        return first + 1, last
    return first, last


def eui64_address(net: IPNetwork, mac: str) -> IPv6Address:
    """The stateless auto-configured address of ``mac`` in a /64 (RFC 4291 appendix A)."""
    if net.version != 6 or net.prefixlen > 64:
        raise InvalidInput(f"EUI-64 addresses need an IPv6 prefix of /64 or shorter, not {net}")
    eui = netaddr.EUI(mac)
    interface_id = int(eui.eui64()) ^ (1 << 57)  # flip the universal/local bit
    return IPv6Address(int(net.network_address) | interface_id)


def normalise_mac(text: object) -> str:
    if not isinstance(text, str):
        raise InvalidInput(f"Invalid input: {text!r} is not a valid MAC address")
    try:
        eui = netaddr.EUI(text, dialect=netaddr.mac_unix_expanded)
    except (netaddr.AddrFormatError, TypeError, ValueError):
        raise InvalidInput(f"Invalid input: '{text}' is not a valid MAC address") from None
    if eui.words[0] & 1:
        raise InvalidInput(f"Invalid input: '{text}' is a multicast MAC address")
    return str(eui)


def range_size(first: int, last: int) -> int:
    return last - first + 1
