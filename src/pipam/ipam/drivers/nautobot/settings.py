"""The Nautobot driver's settings: the ``[drivers.nautobot]`` table (or ``PIPAM_DRIVERS__NAUTOBOT__<KEY>``)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator


class NautobotSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str = Field(description="Base URL of the Nautobot server, e.g. https://nautobot.example.com")
    token: SecretStr = Field(description="API token of a Nautobot user allowed to change IPAM objects.")
    namespace: str = Field("Global", description="The Nautobot namespace Pipam's prefixes and addresses live in.")
    verify_tls: bool | str = Field(True, description="Check the server's certificate; or the path of a CA bundle.")
    timeout: float = Field(10.0, gt=0, le=300, description="Seconds any one call to Nautobot may take (then 503).")
    status: str = Field("Active", description="The Nautobot status Pipam gives the prefixes and addresses it creates.")
    tag: str = Field("pipam", min_length=1, description="The tag marking what Pipam created (cleanup removes those).")
    role: str | None = Field(None, description="An optional ip-address role Pipam gives its addresses.")
    adopt_prefixes: bool = Field(
        False,
        description="Use a prefix that already exists in the namespace for a subnet with the same CIDR (else 409).",
    )
    allocation_attempts: int = Field(
        30, ge=1, le=1000, description="Addresses tried per allocation before giving up on a contended subnet (503)."
    )

    @field_validator("url")
    @classmethod
    def _http(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")
