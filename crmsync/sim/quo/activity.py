"""Read-only activity routes: phone numbers, users, calls, messages and a call's
summary, transcript, recordings and voicemail.

Records come from the seeded workspace and the test helpers. Each resource family has
its own error-code prefix (calls `01`, messages `02`, phone numbers `04`, summaries
`05`, transcripts `06`, users `11`; recordings `07` and voicemails `09` are guesses),
and `GET /v1/calls/{id}` keeps Quo's quirk of answering 400 "Too Many Participants"
for a call with more than two participants.
"""

from __future__ import annotations

from aiohttp import web

from crmsync.sim.quo.state import QUO_SIM_KEY
from crmsync.sim.quo.wire import (
    BadRequestError,
    JsonObject,
    decode_page_token,
    encode_page_token,
    error_response,
    field_error,
    json_response,
    max_results,
    not_found,
)

routes = web.RouteTableDef()

MAX_CALL_PARTICIPANTS = 2


def _found(record: JsonObject | None, code: str, what: str) -> web.Response:
    if record is None:
        return not_found(code, f"{what} not found")
    return json_response({"data": record})


@routes.get("/v1/phone-numbers")
async def list_phone_numbers(request: web.Request) -> web.Response:
    """Not paginated; `userId` keeps the numbers that user belongs to."""
    numbers = list(request.app[QUO_SIM_KEY].workspace.phone_numbers.values())
    user_id = request.query.get("userId")
    if user_id is not None:
        if not user_id.startswith("US"):
            raise BadRequestError(
                [field_error("/userId", "Expected string to match '^US(.*)$'", user_id, "string")],
                code="0400400",
            )
        numbers = [n for n in numbers if any(u["id"] == user_id for u in n["users"])]
    return json_response({"data": numbers})


@routes.get("/v1/phone-numbers/{id}")
async def get_phone_number(request: web.Request) -> web.Response:
    numbers = request.app[QUO_SIM_KEY].workspace.phone_numbers
    return _found(numbers.get(request.match_info["id"]), "0400404", "Phone number")


@routes.get("/v1/users")
async def list_users(request: web.Request) -> web.Response:
    limit = max_results(request, 50)
    after = decode_page_token(request, "users")
    users = list(request.app[QUO_SIM_KEY].workspace.users.values())
    page = users[after : after + limit]
    more = after + limit < len(users)
    return json_response({
        "data": page,
        "totalItems": len(users),
        "nextPageToken": encode_page_token("users", after + limit) if more else None,
    })


@routes.get("/v1/users/{id}")
async def get_user(request: web.Request) -> web.Response:
    users = request.app[QUO_SIM_KEY].workspace.users
    return _found(users.get(request.match_info["id"]), "1100404", "User")


@routes.get("/v1/calls/{id}")
async def get_call(request: web.Request) -> web.Response:
    call = request.app[QUO_SIM_KEY].workspace.calls.get(request.match_info["id"])
    if call is not None and len(call["participants"]) > MAX_CALL_PARTICIPANTS:
        return error_response(400, "0101400", "Too Many Participants")
    return _found(call, "0100404", "Call")


@routes.get("/v1/messages/{id}")
async def get_message(request: web.Request) -> web.Response:
    messages = request.app[QUO_SIM_KEY].workspace.messages
    return _found(messages.get(request.match_info["id"]), "0200404", "Message")


@routes.get("/v1/call-summaries/{id}")
async def get_call_summary(request: web.Request) -> web.Response:
    summaries = request.app[QUO_SIM_KEY].workspace.summaries
    return _found(summaries.get(request.match_info["id"]), "0500404", "Call summary")


@routes.get("/v1/call-transcripts/{id}")
async def get_call_transcript(request: web.Request) -> web.Response:
    transcripts = request.app[QUO_SIM_KEY].workspace.transcripts
    return _found(transcripts.get(request.match_info["id"]), "0600404", "Call transcript")


@routes.get("/v1/call-recordings/{id}")
async def get_call_recordings(request: web.Request) -> web.Response:
    """The call's recordings, oldest first (`[]` for a call without any)."""
    space = request.app[QUO_SIM_KEY].workspace
    call_id = request.match_info["id"]
    if call_id not in space.calls:
        return not_found("0700404", "Call not found")
    return json_response({"data": space.recordings.get(call_id, [])})


@routes.get("/v1/call-voicemails/{id}")
async def get_call_voicemail(request: web.Request) -> web.Response:
    voicemails = request.app[QUO_SIM_KEY].workspace.voicemails
    return _found(voicemails.get(request.match_info["id"]), "0900404", "Call voicemail")


@routes.get("/v1/contact-custom-fields")
async def list_custom_fields(request: web.Request) -> web.Response:
    fields = request.app[QUO_SIM_KEY].contacts.custom_fields.values()
    data = [{"name": d.name, "key": d.key, "type": d.type} for d, _ in fields]
    return json_response({"data": data})
