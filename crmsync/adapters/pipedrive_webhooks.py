"""Pipedrive webhooks without I/O: credentials, which webhooks are ours, checks, parsing.

Pipedrive does not sign deliveries; a webhook can carry HTTP Basic credentials, sent as
`Authorization: Basic ...` with every delivery. They are derived from the API key and the
URL, so nothing has to be stored before the webhook is created and a rotated API key
shows up as a webhook with the wrong user (which `ensure_webhook` replaces):
password = hex HMAC-SHA256(API key, URL)[:40], user = "crmsync-" + sha256(password)[:12]
(the user names the password without revealing it: the listing masks passwords).

Deliveries come in two versions. v2 (the default since 2025-03):
`{"data", "previous", "meta": {"action": create|change|delete, "entity", "entity_id",
"id": <event uuid, kept on retries>, "attempt", ...}}`; a merge arrives as a delete of
the duplicate and a change of the survivor. v1 (older webhooks): `{"event":
"updated.person", "meta": {"action", "object", "id": <the person>}, "current",
"previous", "retry"}`, with `merged.person` for merges.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Iterable, Mapping
from typing import Any, Final, NamedTuple

from crmsync.adapters.base import (
    CrmChange,
    WebhookEvent,
    WebhookFormatError,
    WebhookSignatureError,
)

PASSWORD_LENGTH: Final = 40
V2_KINDS: Final = {"create": "created", "change": "updated", "delete": "deleted"}
V1_KINDS: Final = {
    "added": "created", "updated": "updated", "deleted": "deleted", "merged": "merged",
}


class Credentials(NamedTuple):
    user: str
    password: str

    @property
    def secret(self) -> str:
        """What `verify_webhook` compares with the decoded Basic credentials."""
        return f"{self.user}:{self.password}"


def credentials(api_key: str, target_url: str) -> Credentials:
    password = hmac.new(api_key.encode(), target_url.encode(), hashlib.sha256).hexdigest()
    password = password[:PASSWORD_LENGTH]
    return Credentials("crmsync-" + hashlib.sha256(password.encode()).hexdigest()[:12],
                       password)


class HookPlan(NamedTuple):
    keep: str | None  # the id of a webhook to reuse
    delete: list[str]  # the other webhooks on our URL


def plan_hooks(hooks: Iterable[dict[str, Any]], target_url: str, user: str) -> HookPlan:
    """Of the webhooks listed, the one on `target_url` to reuse (ours: every action on
    persons, active, with today's user) and the others on that URL, to delete: an
    inactive one receives nothing, one with another user has credentials we can no
    longer check (the API key changed), and a second good one would deliver twice."""
    keep: str | None = None
    delete: list[str] = []
    for hook in hooks:
        ident = hook.get("id")
        if hook.get("subscription_url") != target_url or not isinstance(ident, int | str):
            continue
        good = (
            hook.get("event_object") in ("person", "*")
            and hook.get("event_action") == "*"
            and hook.get("is_active") in (1, True)
            and hook.get("http_auth_user") == user
        )
        if good and keep is None:
            keep = str(ident)
        else:
            delete.append(str(ident))
    return HookPlan(keep, delete)


def check_basic_auth(headers: Mapping[str, str], secret: str) -> None:
    """Raise `WebhookSignatureError` unless `Authorization: Basic` carries `secret`."""
    given = next((v for k, v in headers.items() if k.lower() == "authorization"), "")
    scheme, _, token = given.strip().partition(" ")
    if scheme.lower() != "basic" or not token.strip().isascii():
        raise WebhookSignatureError("Authorization: Basic missing")
    try:
        decoded = base64.b64decode(token.strip(), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise WebhookSignatureError("Authorization: Basic is not base64") from exc
    # compare_digest wants equal kinds: bytes both, and only ASCII credentials exist.
    if not decoded.isascii() or not hmac.compare_digest(decoded, secret.encode()):
        raise WebhookSignatureError("Authorization: Basic does not match")


def _entity_id(*candidates: Any) -> str | None:
    for value in candidates:
        if isinstance(value, bool):
            continue
        if isinstance(value, int) or (isinstance(value, str) and value.strip().isdigit()):
            return str(value).strip()
    return None


def _stable_hash(payload: dict[str, Any]) -> str:
    """The payload's hash without what changes between retries of one event (v1's
    `retry`, v2's `meta.attempt`), so a retry is a duplicate in the inbox."""
    stripped = {k: v for k, v in payload.items() if k != "retry"}
    meta = stripped.get("meta")
    if isinstance(meta, dict):
        stripped["meta"] = {k: v for k, v in meta.items() if k != "attempt"}
    canonical = json.dumps(stripped, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


def parse_event(body: bytes) -> WebhookEvent:
    """The delivery's person changes (none for other entities); `WebhookFormatError`
    for a body Pipedrive would not send."""
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError) as exc:  # RecursionError: nested too deeply
        raise WebhookFormatError("body is not JSON") from exc
    meta = payload.get("meta") if isinstance(payload, dict) else None
    if not isinstance(payload, dict) or not isinstance(meta, dict):
        raise WebhookFormatError("no 'meta' object in the Pipedrive payload")
    if isinstance(payload.get("event"), str):
        return _v1(payload, meta)
    return _v2(payload, meta)


def _v2(payload: dict[str, Any], meta: dict[str, Any]) -> WebhookEvent:
    action, entity = meta.get("action"), meta.get("entity")
    if not isinstance(action, str) or not isinstance(entity, str):
        raise WebhookFormatError("a v2 'meta' needs 'action' and 'entity'")
    changes: list[CrmChange] = []
    kind = V2_KINDS.get(action)
    if entity == "person" and kind is not None:
        data, previous = payload.get("data"), payload.get("previous")
        record_id = _entity_id(
            meta.get("entity_id"),
            data.get("id") if isinstance(data, dict) else None,
            previous.get("id") if isinstance(previous, dict) else None,
        )
        if record_id is None:
            raise WebhookFormatError("a person event without the person's id")
        changes.append(CrmChange(crm_object="people", record_id=record_id, kind=kind))
    # Pipedrive keeps meta.id across the retries of one event: the inbox's key.
    ident = meta.get("id")
    event_id = ident.strip() if isinstance(ident, str) and ident.strip() \
        else _stable_hash(payload)
    return WebhookEvent(event_id=event_id, event_type=f"{action}.{entity}", changes=changes)


def _v1(payload: dict[str, Any], meta: dict[str, Any]) -> WebhookEvent:
    event = str(payload["event"])
    action, _, entity = event.partition(".")
    changes: list[CrmChange] = []
    kind = V1_KINDS.get(action)
    if entity == "person" and kind is not None:
        current, previous = payload.get("current"), payload.get("previous")
        current = current if isinstance(current, dict) else {}
        previous = previous if isinstance(previous, dict) else {}
        record_id = _entity_id(meta.get("id"), current.get("id"), previous.get("id"))
        if record_id is None:
            raise WebhookFormatError("a person event without the person's id")
        merged_from = None
        if kind == "merged":
            # The survivor is `current`; the duplicate it absorbed is named by
            # `merge_what_id` (or is the `previous` record, when that is another one).
            merged_from = _entity_id(current.get("merge_what_id"), previous.get("id"))
            if merged_from == record_id:
                merged_from = None
        changes.append(CrmChange(crm_object="people", record_id=record_id, kind=kind,
                                 merged_from=merged_from))
    # v1's meta.id is the person's id, not the event's: the id is the payload's hash.
    return WebhookEvent(event_id=_stable_hash(payload), event_type=event, changes=changes)
