"""``EmulatorConfig``: the switches that pick between documented behaviours."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from provisioner.emulator.faults import FaultPlan
from provisioner.emulator.validation import CONFIG_ECHOES, NETWORKING_TYPES, ConfigEcho

DEFAULT_MAX_BODY_BYTES = 32 * 1024 * 1024
#: The update verbs of the doc generations: POST (the newest), PUT (the oldest).
UPDATE_METHODS = ("POST", "PUT")


@dataclass(frozen=True, slots=True)
class EmulatorConfig:
    """How the emulator behaves where the API's doc generations differ.

    Attributes:
        token: the accepted bearer token; None makes one up (``Emulator.token``).
        forbidden_tokens: tokens that look valid but get 403 ``permission_error``.
        unique_names: 409 ``conflict_error`` on a duplicate name within a token's
            environments (archived ones count, deleted ones do not, case-sensitive).
        idempotency: honour ``Idempotency-Key``/``X-Idempotency-Key``; False ignores them.
        idempotency_ttl_s: how long a stored answer can be replayed.
        limit_over_max: a list ``limit`` above 100 is rejected (400) or capped to 100.
        max_body_bytes: a larger body gets 400 ``invalid_request_error`` (not 413).
        config_echo: an Environment's ``config`` is echoed ``as-sent`` (the seed's
            create example) or ``normalized``, every sub-field filled in (the newest docs).
        state_path: JSON state file, loaded at start and saved atomically when dirty
            (at least every second) and on stop; None keeps state in memory only.
        faults: the live fault plan (this very object is mutated by the admin routes).
        tls_cert: PEM certificate chain file; with ``tls_key`` the emulator serves
            HTTPS (``Emulator.url`` starts with ``https://``). Both or neither.
        tls_key: PEM private key file of ``tls_cert``.
        update_methods: the verbs ``/environments/{id}`` accepts for an update:
            both (the default), ``("POST",)`` as the newest docs or ``("PUT",)`` as
            the oldest; another verb is 405.
        networking_types: the ``config.networking.type`` spellings accepted
            (all four by default; ``unrestricted`` always); another is 400
            ``param: "config.networking.type"``.
        rate_limit_headers: with a rate limit set, every API answer carries
            ``X-RateLimit-Limit``, ``X-RateLimit-Remaining`` and ``X-RateLimit-Reset``
            (the headers the docs plan); off by default, as the docs say today.
    """

    token: str | None = None
    forbidden_tokens: frozenset[str] = frozenset()
    unique_names: bool = True
    idempotency: bool = True
    idempotency_ttl_s: float = 86400.0
    limit_over_max: Literal["reject", "cap"] = "reject"
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    config_echo: ConfigEcho = "as-sent"
    state_path: str | None = None
    faults: FaultPlan = field(default_factory=FaultPlan)
    tls_cert: str | None = None
    tls_key: str | None = None
    update_methods: tuple[str, ...] = UPDATE_METHODS
    networking_types: tuple[str, ...] = NETWORKING_TYPES
    rate_limit_headers: bool = False

    def __post_init__(self) -> None:
        if self.limit_over_max not in ("reject", "cap"):
            raise ValueError(
                f"limit_over_max must be 'reject' or 'cap', got {self.limit_over_max!r}"
            )
        if self.config_echo not in CONFIG_ECHOES:
            raise ValueError(
                f"config_echo must be 'as-sent' or 'normalized', got {self.config_echo!r}"
            )
        if self.max_body_bytes < 1:
            raise ValueError(f"max_body_bytes must be >= 1, got {self.max_body_bytes}")
        if self.idempotency_ttl_s <= 0:
            raise ValueError(
                f"idempotency_ttl_s must be > 0, got {self.idempotency_ttl_s}"
            )
        if self.token is not None and not self.token.strip():
            raise ValueError("token must not be empty")
        if not self.update_methods or not set(self.update_methods) <= set(
            UPDATE_METHODS
        ):
            raise ValueError(
                f"update_methods must be POST, PUT or both, got {self.update_methods!r}"
            )
        if not set(self.networking_types) <= set(NETWORKING_TYPES):
            raise ValueError(
                f"networking_types must be among {', '.join(NETWORKING_TYPES)}, "
                f"got {self.networking_types!r}"
            )
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key go together: give both or neither")
