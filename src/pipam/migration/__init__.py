"""Operator-run migration between IPAM backends: preflight, fence, copy, verify, switch."""
