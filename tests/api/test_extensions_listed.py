"""/v2.0/extensions lists every extension Pipam implements with Neutron's alias, name and description,
and the README lists the same aliases."""

from __future__ import annotations

from pathlib import Path

from tests.api.wire import err, ok

README = Path(__file__).parents[2] / "README.md"

# Neutron's strings for the extensions issue 13 added (neutron-lib API definitions).
NEUTRON = {
    "address-scope": ("Address scope", "Address scopes extension."),
    "default-subnetpools": ("Default Subnetpools", "Provides ability to mark and use a subnetpool as the default."),
    "external-net": ("Neutron external network", "Adds external network attribute to network resource."),
    "ip-substring-filtering": (
        "IP address substring filtering",
        "Provides IP address substring filtering when listing ports",
    ),
    "net-mtu": ("Network MTU", "Provides MTU attribute for a network resource."),
    "net-mtu-writable": ("Network MTU (writable)", "Provides a writable MTU attribute for a network resource."),
    "port-mac-address-regenerate": ("Neutron Port MAC address regenerate", "Network port MAC address regenerate"),
    "revision-if-match": (
        "If-Match constraints based on revision_number",
        "Extension indicating that If-Match based on revision_number is supported.",
    ),
    "subnetpool-prefix-ops": (
        "Subnet Pool Prefix Operations",
        "Provides support for adjusting the prefix list of subnet pools",
    ),
    "tag-creation": ("Tag creation extension", "Allow to create multiple tags for a resource"),
    "tag-ports-during-bulk-creation": ("Tag Ports During Bulk Creation", "Allow to tag ports during bulk creation"),
}

# Also on the Nautobot driver (tests/api/conftest.py).
NAUTOBOT = True


def test_extensions_are_neutrons_and_documented(api):
    listed = {e["alias"]: e for e in ok(api.get("/v2.0/extensions"))["extensions"]}
    for alias, (name, description) in NEUTRON.items():
        assert (listed[alias]["name"], listed[alias]["description"]) == (name, description)
    readme = README.read_text()
    for alias in listed:
        assert ok(api.get(f"/v2.0/extensions/{alias}"))["extension"]["alias"] == alias
        assert f"`{alias}`" in readme, f"README does not list {alias}"
    assert "fields" not in listed  # not a Neutron extension: field selection is core behaviour
    err(api.get("/v2.0/extensions/rbac-address-scope"), 404, "ExtensionNotFound")
