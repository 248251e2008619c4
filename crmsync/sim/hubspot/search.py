"""CRM search (`POST /crm/v3/objects/{type}/search`): validation, filters, one sort, paging.

Strict like HubSpot: at most 5 filter groups (OR'd), 10 filters in a group (AND'd) and
25 in all, one sort (create date, last-modified date or `hs_object_id` here), a page of
at most 200, and no result beyond the 10,000th: `after` + `limit` past it is a 400.
`total` counts every match. Strings compare case-insensitively; date properties take
epoch milliseconds (or ISO 8601); ties of the sort property are broken by id in the
same direction. Without a sort, results come in id order. Search sees the store's
index (`ObjectStore.searchable`), which may lag behind writes.

A whole query's sorted matches are cached per store version, so paging through 10,000
results costs one scan, not fifty.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from crmsync.sim.hubspot.errors import JSONObject, int_param, only_fields, validation_error
from crmsync.sim.hubspot.model import CrmObject, Schema, parse_time
from crmsync.sim.hubspot.store import ObjectStore

MAX_GROUPS, MAX_FILTERS_IN_GROUP, MAX_FILTERS = 5, 10, 25
MAX_LIMIT, DEFAULT_LIMIT, RESULT_CAP = 200, 10, 10_000
BODY_FIELDS = frozenset({"filterGroups", "sorts", "properties", "limit", "after", "query"})
OPERATORS = frozenset({"EQ", "NEQ", "LT", "LTE", "GT", "GTE", "BETWEEN", "IN", "NOT_IN",
                       "HAS_PROPERTY", "NOT_HAS_PROPERTY", "CONTAINS_TOKEN",
                       "NOT_CONTAINS_TOKEN"})
DIRECTIONS = {"ASCENDING": False, "DESCENDING": True}
_TOKEN_SPLIT = re.compile(r"[\s,;()/@.+\-]+")
CACHED_QUERIES = 16

Getter = Callable[[CrmObject], Any]
Predicate = Callable[[CrmObject], bool]


@dataclass(frozen=True, slots=True)
class SearchQuery:
    groups: tuple[tuple[Predicate, ...], ...]
    text: str | None
    sort_by: str
    descending: bool
    properties: list[str] | None
    limit: int
    offset: int
    key: str  # the query without its page, for the cache


def parse_search(schema: Schema, body: JSONObject) -> SearchQuery:
    only_fields(body, BODY_FIELDS, "in search request")
    groups = _groups(schema, body.get("filterGroups", []))
    sort_by, descending = _sort(schema, body.get("sorts", []))
    text = body.get("query")
    if text is not None and not isinstance(text, str):
        raise validation_error("query must be a string.")
    limit = int_param(body.get("limit"), "limit", default=DEFAULT_LIMIT, minimum=1,
                      maximum=MAX_LIMIT)
    offset = int_param(body.get("after"), "after", default=0, minimum=0, maximum=10**9)
    if offset + limit > RESULT_CAP:
        raise validation_error(
            f"Search results are limited to {RESULT_CAP} records; after ({offset}) + limit "
            f"({limit}) exceeds it. Narrow the search with filters.")
    key = json.dumps([body.get("filterGroups"), body.get("sorts"), text], sort_keys=True)
    return SearchQuery(groups, text.lower().strip() if text else None, sort_by, descending,
                       read_properties(body.get("properties")), limit, offset, key)


def read_properties(raw: object) -> list[str] | None:
    if raw is None:
        return None
    if not isinstance(raw, list) or not all(isinstance(p, str) for p in raw):
        raise validation_error("properties must be a list of property names.")
    return list(raw)


class SearchIndex:
    """Runs searches over one store, caching each query's sorted matches."""

    def __init__(self, store: ObjectStore) -> None:
        self.store = store
        self._cache: dict[str, tuple[int, list[CrmObject]]] = {}

    def run(self, query: SearchQuery) -> tuple[int, list[CrmObject]]:
        """`(total, the page of results)`."""
        matches = self._matches(query)
        return len(matches), matches[query.offset:query.offset + query.limit]

    def _matches(self, query: SearchQuery) -> list[CrmObject]:
        store = self.store
        settled = store.clock() >= store.pending_until
        cached = self._cache.get(query.key)
        if settled and cached is not None and cached[0] == store.version:
            return cached[1]
        matches = [obj for obj in store.searchable()
                   if not obj.archived and _wanted(obj, query)]
        sort_key = getter(store.schema, query.sort_by)
        matches.sort(key=lambda o: (sort_key(o), o.id), reverse=query.descending)
        if settled:
            if len(self._cache) >= CACHED_QUERIES:
                self._cache.clear()
            self._cache[query.key] = (store.version, matches)
        return matches


def _wanted(obj: CrmObject, query: SearchQuery) -> bool:
    if query.groups and not any(all(p(obj) for p in group) for group in query.groups):
        return False
    if query.text is None:
        return True
    return any(
        token.startswith(query.text)
        for name in obj.schema.searchable
        for token in tokens(obj.properties.get(name, ""))
    )


def _groups(schema: Schema, raw: object) -> tuple[tuple[Predicate, ...], ...]:
    if not isinstance(raw, list):
        raise validation_error("filterGroups must be a list.")
    if len(raw) > MAX_GROUPS:
        raise validation_error(f"Too many filter groups ({len(raw)}); the maximum is "
                               f"{MAX_GROUPS}.")
    groups: list[tuple[Predicate, ...]] = []
    total = 0
    for group in raw:
        filters = group.get("filters") if isinstance(group, dict) else None
        if not isinstance(filters, list) or not filters:
            raise validation_error("Each filter group needs a non-empty list of filters.")
        if len(filters) > MAX_FILTERS_IN_GROUP:
            raise validation_error(f"Too many filters in a group ({len(filters)}); the "
                                   f"maximum is {MAX_FILTERS_IN_GROUP}.")
        total += len(filters)
        groups.append(tuple(_filter(schema, f) for f in filters))
    if total > MAX_FILTERS:
        raise validation_error(f"Too many filters ({total}); the maximum is {MAX_FILTERS}.")
    return tuple(groups)


def _sort(schema: Schema, raw: object) -> tuple[str, bool]:
    if not isinstance(raw, list):
        raise validation_error("sorts must be a list.")
    if len(raw) > 1:
        raise validation_error("Only one sort is allowed per search.")
    if not raw:
        return "hs_object_id", False
    sort = raw[0]
    if not isinstance(sort, dict) or sort.get("direction", "ASCENDING") not in DIRECTIONS:
        raise validation_error('A sort is {"propertyName", "direction": "ASCENDING" | '
                               '"DESCENDING"}.')
    name = sort.get("propertyName")
    if name not in schema.computed:
        raise validation_error(f"Sorting by {name!r} is not supported by the simulator "
                               f"(only {sorted(schema.computed)}).")
    return str(name), DIRECTIONS[sort.get("direction", "ASCENDING")]


def getter(schema: Schema, name: str) -> Getter:
    """The typed value search compares: id, epoch ms, or the lower-cased string."""
    if name == "hs_object_id":
        return lambda o: o.id
    if name == schema.created:
        return lambda o: o.created_ms
    if name == schema.modified:
        return lambda o: o.updated_ms
    if name in schema.dates:
        return lambda o: parse_time(o.properties.get(name))

    def text(o: CrmObject) -> str | None:
        value = o.properties.get(name)
        return value.lower() if value else None

    return text


def _filter(schema: Schema, raw: object) -> Predicate:
    if not isinstance(raw, dict):
        raise validation_error("Each filter must be an object.")
    name, operator = raw.get("propertyName"), raw.get("operator")
    if not isinstance(name, str) or not schema.known(name):
        raise validation_error(f"Property {name!r} does not exist on {schema.label}.")
    if operator not in OPERATORS:
        raise validation_error(f"Unknown filter operator {operator!r}.")
    if operator in ("CONTAINS_TOKEN", "NOT_CONTAINS_TOKEN"):
        found = _token_matcher(str(_required(raw, "value", name)))
        if operator == "CONTAINS_TOKEN":
            return lambda o: found(o.value(name))
        return lambda o: not found(o.value(name))
    get = getter(schema, name)

    def wanted(value: object) -> Any:
        return _typed(schema, name, value)

    return _compare(str(operator), get, name, raw, wanted)


def _compare(
    op: str, get: Getter, name: str, raw: JSONObject, wanted: Callable[[object], Any]
) -> Predicate:
    if op == "HAS_PROPERTY":
        return lambda o: get(o) is not None
    if op == "NOT_HAS_PROPERTY":
        return lambda o: get(o) is None
    if op in ("IN", "NOT_IN"):
        values = raw.get("values")
        if not isinstance(values, list) or not values:
            raise validation_error(f"{op} on {name} needs a non-empty list of values.")
        chosen = {wanted(v) for v in values}
        if op == "IN":
            return lambda o: get(o) in chosen
        return lambda o: get(o) not in chosen
    if op == "BETWEEN":
        low, high = wanted(_required(raw, "value", name)), wanted(
            _required(raw, "highValue", name))
        return lambda o: (v := get(o)) is not None and low <= v <= high
    value = wanted(_required(raw, "value", name))
    tests: dict[str, Callable[[Any], bool]] = {
        "EQ": lambda v: v == value, "NEQ": lambda v: v != value,
        "GT": lambda v: v > value, "GTE": lambda v: v >= value,
        "LT": lambda v: v < value, "LTE": lambda v: v <= value,
    }
    check = tests[op]
    if op == "NEQ":  # a record without the property is "not equal" too
        return lambda o: (v := get(o)) is None or check(v)
    return lambda o: (v := get(o)) is not None and check(v)


def _required(raw: JSONObject, key: str, name: str) -> object:
    value = raw.get(key)
    if value is None or isinstance(value, dict | list):
        raise validation_error(f"The filter on {name} needs a {key!r}.")
    return value


def _typed(schema: Schema, name: str, value: object) -> Any:
    """A filter value converted to the property's type (400 if it does not convert)."""
    if name == "hs_object_id":
        if isinstance(value, bool) or not str(value).strip().isdigit():
            raise validation_error(f"hs_object_id filters take numeric ids, got {value!r}.")
        return int(str(value))
    if name in (schema.created, schema.modified) or name in schema.dates:
        moment = parse_time(value)
        if moment is None:
            raise validation_error(f"{name} filters take epoch milliseconds, got {value!r}.")
        return moment
    if isinstance(value, dict | list):
        raise validation_error(f"The filter on {name} takes a single value.")
    return str(value).lower()


def tokens(value: str | None) -> list[str]:
    """A value's search tokens: words split at spaces and punctuation, lower-cased."""
    if not value:
        return []
    return [t for t in _TOKEN_SPLIT.split(value.lower()) if t]


def _token_matcher(pattern: str) -> Callable[[str | int | None], bool]:
    """CONTAINS_TOKEN: the whole value or one of its tokens matches (`*` is a wildcard)."""
    wanted = pattern.lower().strip()
    pieces = tokens(wanted)
    wildcard = re.compile(".*".join(re.escape(p) for p in wanted.split("*")), re.DOTALL)

    def found(value: str | int | None) -> bool:
        if value is None:
            return False
        text = str(value).lower()
        if "*" in wanted:
            return bool(wildcard.fullmatch(text)) or any(
                wildcard.fullmatch(t) for t in tokens(text))
        if text == wanted:
            return True
        have = tokens(text)
        return bool(pieces) and all(p in have for p in pieces)

    return found
