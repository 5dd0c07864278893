"""The policy table: docs/security.md shows the code's table, and every served resource has its rows."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pipam.service import availability, policy
from pipam.service.policy import ADMIN, Caller, Target, decide
from pipam.service.resources import discover, networks

DOC = Path(__file__).parents[1] / "docs" / "security.md"


def test_security_doc_shows_the_table_the_code_enforces():
    text = DOC.read_text()
    block = re.search(r"<!-- policy-table[^>]*-->\n(.*?)\n<!-- /policy-table -->", text, re.S)
    assert block is not None, "docs/security.md lost its generated policy table"
    assert block.group(1) == policy.table(), "regenerate the table: python -c 'from pipam.service.policy import table'"


@pytest.mark.parametrize("module", discover(), ids=lambda m: m.DEFINITION.plural)
def test_every_served_resource_has_its_rows(module):
    definition = module.DEFINITION
    for action in ("create", "get", "update", "delete"):
        assert f"{action}_{definition.singular}" in policy.RULES
    for attr in definition.attributes:
        if attr.admin_only:
            for action in ("create", "update") if attr.put else ("create",):
                assert f"{action}_{definition.singular}:{attr.name}" in policy.RULES, attr.name
    assert f"get_{availability.DEFINITION.singular}" in policy.RULES


def test_hidden_and_forbidden_follow_readability():
    me = Caller("p", restricted=True)
    mine, theirs, shared = Target("p"), Target("q"), Target("q", shared=True)
    assert decide(me, "update", "network", mine)[0] == policy.OK
    assert decide(me, "update", "network", theirs)[0] == policy.HIDDEN
    assert decide(me, "update", "network", shared)[0] == policy.FORBIDDEN
    assert decide(ADMIN, "delete", "network", theirs)[0] == policy.OK
    # The network's owner may delete a port on its network but neither read nor change it.
    port = Target("q", network_owner="p")
    assert decide(me, "delete", "port", port)[0] == policy.OK
    assert decide(me, "get", "port", port)[0] == policy.HIDDEN
    assert decide(me, "update", "port", port)[0] == policy.HIDDEN
    # Attribute rules refine their action: device_owner network:* only on one's own network.
    router = {"device_owner": "network:router_interface"}
    on_shared = Target("p", shared=True, network_owner="q", fields=router)
    status, failed = decide(me, "create", "port", on_shared, ["device_owner"])
    assert (status, failed) == (policy.FORBIDDEN, ["create_port:device_owner"])
    assert decide(me, "create", "port", Target("p", network_owner="p", fields=router), ["device_owner"])[0] == 200


def test_rules_without_a_row_fall_back_to_neutrons_default():
    """A rule the table lacks (names here are not in it) is decided from the resource's definition."""
    definition = networks.DEFINITION
    me = Caller("p", restricted=True)
    action = policy.rule("frob_network", definition)
    assert action is not None and action.allows(me, Target("p")) and not action.allows(me, Target("q"))
    assert definition.by_name["shared"].admin_only
    admin_only = policy.rule("frob_network:shared", definition)
    assert admin_only is not None and not admin_only.allows(me, Target("p"))
    assert policy.rule("frob_network:name", definition) is None
