"""The activity logger's test harness: Quo and Attio simulators on real sockets, a store.

    async with activity_env(tmp_path) as env:
        kind, body = env.call_event(env.quo_sim.add_call([ALICE]))      # legacy envelope
        kind, body = env.v2("call.completed", env.quo_sim.payloads.call_completed(call))
        assert await env.logger.handle(kind, body) == "logged"

Legacy envelopes come from the simulator's `build_event`, 2026-03-30 ones from its
publisher (`prepare`: serialised like a delivery, sent nowhere), both from the records
`GET /v1/...` answers with.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from crmsync.adapters.attio import AttioAdapter
from crmsync.net.ratelimit import SlidingWindowLimiter, slot_trace_config
from crmsync.net.retry import RetryPolicy
from crmsync.quo.client import QuoClient
from crmsync.services.activity import ActivityLogger
from crmsync.sim.attio import AttioSim, AttioSimConfig, run_attio_simulator
from crmsync.sim.quo import QuoSim, QuoSimConfig, run_quo_simulator
from crmsync.sim.quo.wire import JsonObject
from crmsync.store import Store, open_store

TENANT = "acme"
ATTIO_KEY = "attio-test-key"
ALICE = "+12125550101"
BOB = "+12125550102"
STRANGER = "+12125550199"
DIALOGUE: list[tuple[str, str | None]] = [
    ("Hi, I'd like a quote for the roof.", ALICE),
    ("Sure, when can we come by?", None),
    ("Tuesday works.", ALICE),
]
CREATE_NOTE = "POST /v2/notes 200"
LEGACY_TYPES = {"call.summary.completed": "callSummary",
                "call.transcript.completed": "callTranscript"}
Parts = tuple[JsonObject, JsonObject, JsonObject]  # resource, context, links


@dataclass
class Env:
    quo_sim: QuoSim
    attio_sim: AttioSim
    attio_url: str
    session: aiohttp.ClientSession
    quo: QuoClient
    adapter: AttioAdapter
    store: Store
    logger: ActivityLogger
    quo_url: str

    def new_logger(
        self, adapter: AttioAdapter | None = None, *, quo: QuoClient | None = None,
        tenant: str = TENANT,
    ) -> ActivityLogger:
        """A logger with empty caches, as after a restart."""
        return ActivityLogger(
            tenant, quo=quo or self.quo, adapter=adapter or self.adapter, store=self.store
        )

    def quo_client(self, kind: type[QuoClient] = QuoClient) -> QuoClient:
        return kind(
            self.session, base_url=self.quo_url, api_key=self.quo_sim.api_key,
            limiter=SlidingWindowLimiter(1000), tenant=TENANT,
            retry=RetryPolicy(max_retries=1, base_delay=0.01),
        )

    def notes(self, person: str) -> list[dict[str, Any]]:
        return [n for n in self.attio_sim.notes.values() if n["parent_record_id"] == person]

    @property
    def notes_created(self) -> int:
        return self.attio_sim.stats.requests[CREATE_NOTE]

    @property
    def own_number(self) -> str:
        return self.quo_sim.workspace.lines[0].number

    @property
    def owner(self) -> str:
        return str(self.quo_sim.workspace.owner["id"])

    def message_event(self, message: dict[str, Any], **changes: Any) -> tuple[str, bytes]:
        kind = "message.received" if message["direction"] == "incoming" else "message.delivered"
        obj = {**self.quo_sim.workspace.message_event_object(message), **changes}
        return kind, self.quo_sim.build_event(kind, obj).body

    def call_event(self, call: dict[str, Any], **changes: Any) -> tuple[str, bytes]:
        obj = {**self.quo_sim.workspace.call_event_object(call), **changes}
        return "call.completed", self.quo_sim.build_event("call.completed", obj).body

    def summary_event(self, summary: dict[str, Any], envelope_type: str) -> tuple[str, bytes]:
        obj = self.quo_sim.workspace.summary_event_object(summary)
        event = self.quo_sim.build_event(
            "call.summary.completed", obj, envelope_type=envelope_type
        )
        return envelope_type, event.body

    def transcript_event(
        self, transcript: dict[str, Any], envelope_type: str
    ) -> tuple[str, bytes]:
        obj = self.quo_sim.workspace.transcript_event_object(transcript)
        event = self.quo_sim.build_event(
            "call.transcript.completed", obj, envelope_type=envelope_type
        )
        return envelope_type, event.body


    # -- 2026-03-30 envelopes ------------------------------------------------------------

    def v2(self, kind: str, parts: Parts, *, event_id: str | None = None) -> tuple[str, bytes]:
        """`kind` with `(resource, context, links)` in the 2026-03-30 envelope."""
        publication = self.quo_sim.publisher.prepare(kind, *parts, event_id=event_id)
        return kind, publication.body

    def legacy_twin(self, kind: str, parts: Parts) -> tuple[str, bytes] | None:
        """The same occurrence as a legacy webhook delivers it (None: no legacy event)."""
        obj = self.quo_sim.legacy_objects.legacy_object(kind, parts[0], parts[1])
        if obj is None:
            return None
        envelope_type = LEGACY_TYPES.get(kind, kind)
        return envelope_type, self.quo_sim.build_event(
            kind, obj, envelope_type=envelope_type
        ).body


@contextlib.asynccontextmanager
async def activity_env(tmp_path: Path) -> AsyncIterator[Env]:
    async with (
        run_quo_simulator(config=QuoSimConfig(requests_per_second=1000)) as (quo_sim, quo_url),
        run_attio_simulator(config=AttioSimConfig(api_keys=[ATTIO_KEY])) as (attio_sim, a_url),
        aiohttp.ClientSession(trace_configs=[slot_trace_config()]) as session,
        open_store(tmp_path / "state.db") as store,
    ):
        await store.tenants.upsert(TENANT, "attio")
        quo = QuoClient(
            session, base_url=quo_url, api_key=quo_sim.api_key,
            limiter=SlidingWindowLimiter(1000), tenant=TENANT,
            retry=RetryPolicy(max_retries=1, base_delay=0.01),
        )
        adapter = AttioAdapter(session, api_key=ATTIO_KEY, base_url=a_url)
        logger = ActivityLogger(TENANT, quo=quo, adapter=adapter, store=store)
        yield Env(quo_sim, attio_sim, a_url, session, quo, adapter, store, logger, quo_url)
