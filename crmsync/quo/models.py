"""msgspec models of the Quo API v1 payloads crmsync sends and reads.

Field names are camelCase on the wire (`rename="camel"`). Response models ignore
unknown fields so that Quo adding a field never breaks decoding; `None` defaults make
absent and null the same, as Quo's spec allows both for most fields.
"""

from __future__ import annotations

from typing import Any

import msgspec


class Base(msgspec.Struct, rename="camel", kw_only=True, omit_defaults=True):
    pass


class LabeledValue(Base):
    name: str
    value: str | None
    id: str | None = None


class DefaultFields(Base):
    first_name: str | None
    last_name: str | None = None
    company: str | None = None
    role: str | None = None
    emails: list[LabeledValue] = msgspec.field(default_factory=list)
    phone_numbers: list[LabeledValue] = msgspec.field(default_factory=list)


class CustomFieldValue(Base):
    key: str
    value: Any


class ContactInput(Base):
    """Body of create and PATCH; PATCH replaces arrays, so it is always sent whole."""

    default_fields: DefaultFields
    external_id: str | None = None
    source: str | None = None
    source_url: str | None = None
    custom_fields: list[CustomFieldValue] = msgspec.field(default_factory=list)


class Contact(Base):
    id: str
    default_fields: DefaultFields
    external_id: str | None = None
    source: str | None = None
    source_url: str | None = None
    created_at: str | None = None
    updated_at: str | None = None


class ContactPage(Base):
    data: list[Contact]
    next_page_token: str | None = None
    total_items: int | None = None  # inaccurate per Quo's own spec: never used to stop


class User(Base):
    """A workspace member (`GET /v1/users`): who answered a call, who spoke."""

    id: str
    first_name: str | None = None
    last_name: str | None = None
    email: str | None = None


class UserPage(Base):
    data: list[User]
    next_page_token: str | None = None


class PhoneNumber(Base):
    id: str
    number: str | None = None
    name: str | None = None


class Webhook(Base):
    id: str
    url: str
    events: list[str]
    key: str | None = None
    status: str | None = None
    label: str | None = None
    resource_ids: list[str] | None = None


class WebhookInput(Base):
    url: str
    events: list[str]
    resource_ids: list[str] | None = None
    label: str | None = None


class Call(Base):
    id: str
    direction: str | None = None
    status: str | None = None
    duration: int | None = None
    participants: list[str] = msgspec.field(default_factory=list)
    phone_number_id: str | None = None
    user_id: str | None = None
    answered_at: str | None = None
    answered_by: str | None = None
    completed_at: str | None = None
    created_at: str | None = None


class Message(Base):
    id: str
    direction: str | None = None
    status: str | None = None
    text: str | None = None
    from_: str | None = msgspec.field(default=None, name="from")
    to: list[str] | str | None = None
    phone_number_id: str | None = None
    created_at: str | None = None


class CallSummary(Base):
    call_id: str
    status: str | None = None
    summary: list[str] | None = None
    next_steps: list[str] | None = None


class DialogueLine(Base):
    content: str | None = None
    start: float | None = None
    end: float | None = None
    identifier: str | None = None
    user_id: str | None = None


class CallTranscript(Base):
    call_id: str
    status: str | None = None
    duration: float | None = None
    dialogue: list[DialogueLine] | None = None


# -- the 2026-03-30 webhook API (`crmsync.quo.webhooks`) -----------------------------------
# Unprefixed paths on `quo.webhooks_base_url`; numeric string ids; `key` (`whsec_…`) only
# in the create and rotate answers. Research: quo-api-2026-03-30.md §2.


class VersionedWebhook(Base):
    """A webhook of the 2026-03-30 system (`GET /webhooks` item, create/patch answer)."""

    id: str
    url: str
    events: list[str]
    status: str | None = None  # "enabled" | "disabled"
    resource_ids: list[str] | None = None  # PN… ids, or ["*"]
    label: str | None = None
    api_version: str | None = None
    key: str | None = None  # create answer only
    created_at: str | None = None
    updated_at: str | None = None

    @property
    def enabled(self) -> bool:
        return self.status in (None, "enabled")


class VersionedWebhookInput(Base):
    """Body of `POST /webhooks`; `resourceIds` omitted means every number (`["*"]`)."""

    url: str
    events: list[str]
    resource_ids: list[str] | None = None
    status: str | None = None
    label: str | None = None


class VersionedWebhookPatch(Base):
    """Body of `PATCH /webhooks/{id}`: only the fields set are sent (`events` replaces)."""

    url: str | msgspec.UnsetType = msgspec.UNSET
    events: list[str] | msgspec.UnsetType = msgspec.UNSET
    resource_ids: list[str] | msgspec.UnsetType | None = msgspec.UNSET
    status: str | msgspec.UnsetType = msgspec.UNSET
    label: str | msgspec.UnsetType | None = msgspec.UNSET


class RotatedKey(Base):
    key: str


class SentTestEvent(Base):
    """`POST /webhooks/{id}/events/test`: the rendered sample (not wrapped in `data`)."""

    id: str | None = None
    type: str | None = None
    api_version: str | None = None
    created_at: str | None = None


class WebhookDelivery(Base):
    """One delivery in the log; `id` is the `webhook-id` header of its requests."""

    id: str
    status: str  # "success" | "pending" | "sending" | "failed"
    event_type: str | None = None
    event_id: str | None = None  # null for test deliveries
    resource_id: str | None = None
    next_attempt_at: str | None = None
    created_at: str | None = None


class DeliveryPage(Base):
    data: list[WebhookDelivery]
    next_cursor: str | None = None


class DeliveryAttempt(Base):
    status: str | None = None
    id: str | None = None
    timestamp: str | None = None
    response_status_code: int | None = None  # 0: no response (timeout, DNS)
    response_body: str | None = None
    response_duration_ms: float | None = None
    trigger_type: str | None = None  # "scheduled" | "manual"
    url: str | None = None


class WebhookDeliveryDetail(Base):
    id: str
    event_type: str | None = None
    event_id: str | None = None
    resource_id: str | None = None
    created_at: str | None = None
    status: str | None = None
    request_body: Any = None
    attempts: list[DeliveryAttempt] = msgspec.field(default_factory=list)
