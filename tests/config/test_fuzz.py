"""Config decoding under fuzzing: any document is a `Config` or a `ConfigError`, nothing else.

Documents are built from the real keys (read off the `Config` Structs, so a new key is
fuzzed without touching this file) with values that are sometimes valid and sometimes
anything TOML can hold: wrong types, out-of-range and huge numbers, nan, dates, odd
strings, unknown keys, tables where arrays belong, and secret references to set,
unset, empty and pasted environment variables and to readable, missing, empty,
binary and oversized files. The properties:

* `parse_config` returns a `Config` or raises `ConfigError`, never another exception;
* every problem is one line, `crmsync.toml: <key path>: <why>`, and the key path names
  a key of the document (or a required key missing from a table of it);
* no problem line, `repr` or rendering shows a secret's value;
* a `Config` renders back to TOML that parses to the same `Config`;
* text that is not TOML and bytes that are not UTF-8 (through `load_config`) are one
  `ConfigError` line too.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec.inspect as mi
import pytest
from hypothesis import event, example, given, settings
from hypothesis import strategies as st

from crmsync.config import Config, Secret, StateUrl, load_config, parse_config, render_config
from crmsync.config.secret import MAX_SECRET_FILE_BYTES
from crmsync.errors import ConfigError

SOURCE = "crmsync.toml"
SCHEMA = mi.type_info(Config)
assert isinstance(SCHEMA, mi.StructType)

# Secret values: distinctive enough that no generated string is ever equal to one, so
# seeing one in a message can only mean it leaked.
QUO_SECRET = "quo-S3CRET-4f1d9a0c"
CRM_SECRET = "crm-S3CRET-77b2e514"
FILE_SECRET = "file-S3CRET-0c3aa9d2"
DB_PASSWORD = "db-S3CRET-5e6f7a8b"  # in the state URLs below: never shown either
SECRETS = (QUO_SECRET, CRM_SECRET, FILE_SECRET, DB_PASSWORD)

#: stands for the module's secrets directory in generated references (the directory
#: only exists once the module fixture made it; examples must be plain values)
DIR = "@SECRETS@"
BASE_ENV = {
    "QUO_KEY": QUO_SECRET, "CRM_KEY": CRM_SECRET, "BLANK_KEY": " \t",
    "STATE_URL": f"postgresql://crmsync:{DB_PASSWORD}@db.internal:5432/crmsync",
    "BAD_STATE_URL": f"mysql://crmsync:{DB_PASSWORD}@db.internal/crmsync",
}

# A key TOML can write without quotes; any other key is shown quoted in a problem.
BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")

SETTINGS = settings(max_examples=300, deadline=None)


# -- generating TOML values and documents ------------------------------------------------

# utf-8 codec: no lone surrogates, which no text file can hold.
TEXT = st.text(alphabet=st.characters(codec="utf-8"), max_size=20)
KEYS = st.text(alphabet=st.characters(codec="utf-8"), max_size=12)
NUMBERS = st.one_of(
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.integers(min_value=-100, max_value=100_000),
    st.floats(allow_nan=True, allow_infinity=True),
)
TIMEZONES = st.sampled_from([None, dt.UTC, dt.timezone(dt.timedelta(hours=-5, minutes=-30))])
DATES = st.one_of(
    st.dates(),
    st.datetimes(timezones=TIMEZONES),
    st.times(),
)
SCALARS = st.one_of(st.booleans(), NUMBERS, TEXT, DATES)
ANY_VALUE: st.SearchStrategy[Any] = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(KEYS, inner, max_size=3)
    ),
    max_leaves=6,
)


RESOLVABLE = st.sampled_from(["env:QUO_KEY", "env:CRM_KEY", f"file:{DIR}/key", "file:%d/key"])


def secret_references() -> st.SearchStrategy[str]:
    """References that resolve, and every way one can fail (or leak, if echoed)."""
    return st.one_of(
        RESOLVABLE,
        st.sampled_from([
            "env:QUO_KEY", "env:CRM_KEY", "env:UNSET_KEY", "env:BLANK_KEY", "env:",
            f"env:{QUO_SECRET}",  # a key pasted after "env:"
            QUO_SECRET,  # a key pasted as an inline value
            f"file:{DIR}/key", f"file:{DIR}/empty", f"file:{DIR}/binary", f"file:{DIR}/huge",
            f"file:{DIR}/missing", f"file:{DIR}", "file:", "file:%d/key", "file:%d/missing",
        ]),
        TEXT,
        TEXT.map(lambda s: "env:" + s),
        TEXT.map(lambda s: "file:" + s),
    )


GOOD_STATE_URLS = st.sampled_from([
    "postgresql://crmsync@db.internal/crmsync", "postgres://db:5433/x?sslmode=require",
    "postgresql:///crmsync?host=/run/postgresql", "env:STATE_URL", f"file:{DIR}/state-url",
])


def state_urls() -> st.SearchStrategy[str]:
    """`daemon.state_url` values: good ones, and every way one can fail (or leak)."""
    return st.one_of(
        GOOD_STATE_URLS,
        st.sampled_from([
            f"postgresql://crmsync:{DB_PASSWORD}@db/crmsync",  # a password inline
            f"postgresql://crmsync@db/crmsync?password={DB_PASSWORD}",
            f"mysql://crmsync:{DB_PASSWORD}@db/crmsync", DB_PASSWORD, f"env:{DB_PASSWORD}",
            "env:BAD_STATE_URL", "env:UNSET_KEY", "env:BLANK_KEY", f"file:{DIR}/key",
            f"file:{DIR}/missing", "postgresql://db:port/x", "postgresql://db:0/x",
            "postgresql://d b/x", "file:%d/state-url",
        ]),
        TEXT,
        TEXT.map(lambda s: "postgresql://" + s),
    )


def valid_value(t: mi.Type, wild: bool) -> st.SearchStrategy[Any]:
    """Values the schema type `t` accepts; for a secret a reference, which may fail
    unless not `wild`; a table's values are valid and unknown keys absent unless `wild`."""
    match t:
        case mi.Metadata(type=inner) | mi.UnionType(types=(inner, mi.NoneType())):
            return valid_value(inner, wild)
        case mi.BoolType():
            return st.booleans()
        case mi.IntType(ge=lo, le=hi):
            return st.integers(min_value=lo, max_value=hi)
        case mi.FloatType(ge=lo, le=hi):
            assert lo is not None and hi is not None
            return st.floats(min_value=lo, max_value=hi) | st.integers(
                min_value=math.ceil(lo), max_value=math.floor(hi)
            )
        case mi.StrType(pattern=str(pattern)):
            return st.from_regex(pattern, alphabet=st.characters(codec="utf-8"))
        case mi.StrType(min_length=min_length):
            return st.text(alphabet=st.characters(codec="utf-8"), min_size=min_length or 0,
                           max_size=20)
        case mi.LiteralType(values=values):
            return st.sampled_from(values)
        case mi.VarTupleType(item_type=item, min_length=min_length):
            return st.lists(valid_value(item, wild), min_size=min_length or 0, max_size=3)
        case mi.CustomType(cls=cls) if cls is Secret:
            return secret_references() if wild else RESOLVABLE
        case mi.CustomType(cls=cls) if cls is StateUrl:
            return state_urls() if wild else GOOD_STATE_URLS
        case mi.StructType(fields=fields):
            return table(fields, wild)
    raise AssertionError(f"the config schema grew a type this test cannot fuzz: {t!r}")


def field_value(t: mi.Type, wild: bool) -> st.SearchStrategy[Any]:
    """`wild`: a valid value or anything at all; else a valid value."""
    if not wild:
        return valid_value(t, wild)
    return st.one_of(valid_value(t, wild), ANY_VALUE)


@st.composite
def table(draw: st.DrawFn, fields: tuple[mi.Field, ...], wild: bool) -> dict[str, Any]:
    """A table of the known keys; when `wild`, a required one may be missing and
    unknown keys may be added."""
    known = {f.name: field_value(f.type, wild) for f in fields}
    required = [f.name for f in fields if f.required]
    drawn: dict[str, Any] = draw(st.fixed_dictionaries(
        {name: known[name] for name in required},
        optional={name: s for name, s in known.items() if name not in required},
    ))
    if not wild:
        return drawn
    for name in draw(st.sets(st.sampled_from(required), max_size=1) if required else st.just(())):
        del drawn[name]
    unknown = draw(st.dictionaries(KEYS, ANY_VALUE, max_size=2))
    return drawn | {k: v for k, v in unknown.items() if k not in drawn}


def documents(wild: bool) -> st.SearchStrategy[dict[str, Any]]:
    """Whole documents: known tables (when `wild`: or something else in their place, and
    unknown keys). Tame ones are mostly valid: duplicate tenant ids, `file:%d` without
    CREDENTIALS_DIRECTORY and `state_path` beside `state_url` are their only problems."""
    assert isinstance(SCHEMA, mi.StructType)
    top = {f.name: field_value(f.type, wild) for f in SCHEMA.fields}
    return st.builds(
        lambda known, unknown: known | {k: v for k, v in unknown.items() if k not in known},
        st.fixed_dictionaries({}, optional=top),
        st.dictionaries(KEYS, ANY_VALUE, max_size=2) if wild else st.just({}),
    )


def environments() -> st.SearchStrategy[dict[str, str]]:
    """The process environment: the keys, and CREDENTIALS_DIRECTORY set or not."""
    return st.builds(
        lambda with_credentials: BASE_ENV | ({"CREDENTIALS_DIRECTORY": DIR}
                                             if with_credentials else {}),
        st.booleans(),
    )


# -- writing TOML ------------------------------------------------------------------------


def toml_string(value: str) -> str:
    # A JSON string is a TOML basic string, except that TOML also wants DEL escaped.
    return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")


def toml_inline(value: Any) -> str:
    match value:
        case bool():
            return "true" if value else "false"
        case int() | float():
            return repr(value)  # inf, -inf and nan are TOML too
        case str():
            return toml_string(value)
        case dt.date() | dt.time():  # datetime is a date
            return value.isoformat()
        case list():
            return "[" + ", ".join(toml_inline(v) for v in value) + "]"
        case dict():
            return "{" + ", ".join(f"{toml_string(k)} = {toml_inline(v)}"
                                   for k, v in value.items()) + "}"
    raise AssertionError(f"not a TOML value: {value!r}")


def to_toml(doc: Mapping[str, Any]) -> str:
    """`doc` as a TOML file: tables as `[name]`, arrays of tables as `[[name]]`."""
    def is_table(v: Any) -> bool:
        return isinstance(v, dict)

    def is_array_of_tables(v: Any) -> bool:
        return isinstance(v, list) and bool(v) and all(isinstance(x, dict) for x in v)

    lines = [f"{toml_string(k)} = {toml_inline(v)}" for k, v in doc.items()
             if not is_table(v) and not is_array_of_tables(v)]
    for key, value in doc.items():
        sections = [value] if is_table(value) else value if is_array_of_tables(value) else []
        header = f"[{toml_string(key)}]" if is_table(value) else f"[[{toml_string(key)}]]"
        for section in sections:
            lines.append(header)
            lines += [f"{toml_string(k)} = {toml_inline(v)}" for k, v in section.items()]
    return "\n".join(lines) + "\n"


def same(a: Any, b: Any) -> bool:
    """Equality of parsed TOML where nan equals nan."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


def substitute(value: Any, directory: str) -> Any:
    """`value` with the secrets directory's placeholder replaced by its path."""
    match value:
        case str():
            return value.replace(DIR, directory)
        case list():
            return [substitute(v, directory) for v in value]
        case dict():
            return {k: substitute(v, directory) for k, v in value.items()}
    return value


# -- checking the outcome ----------------------------------------------------------------


def shown_key(key: str) -> str:
    """A key as problems name it: bare when TOML allows it bare, else quoted."""
    if BARE_KEY.fullmatch(key):
        return key
    shown = repr(key)
    return shown if len(shown) <= 60 else shown[:57] + "..."


def key_paths(value: Any, path: str = "") -> Iterator[str]:
    """Every key path in a parsed document, spelled the way problems spell them."""
    if isinstance(value, dict):
        for key, item in value.items():
            child = f"{path}.{shown_key(key)}" if path else shown_key(key)
            yield child
            yield from key_paths(item, child)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield f"{path}[{i}]"
            yield from key_paths(item, f"{path}[{i}]")


def required_paths(value: Any) -> Iterator[str]:
    """Paths of required keys of the tenant tables (and their Metakocka links), present
    or not."""
    tenants = value.get("tenants") if isinstance(value, dict) else None
    if isinstance(tenants, list):
        for i, tenant in enumerate(tenants):
            yield from (f"tenants[{i}].{name}" for name in ("id", "crm", "quo_api_key",
                                                             "crm_api_key"))
            link = tenant.get("metakocka") if isinstance(tenant, dict) else None
            if isinstance(link, dict):  # [tenants.metakocka] has required keys of its own
                yield from (f"tenants[{i}].metakocka.{name}"
                            for name in ("company_id", "secret_key"))


def check_problems(error: ConfigError, doc: Any, environ: Mapping[str, str]) -> None:
    """Every problem is one line naming a key of `doc`, and shows no secret."""
    assert error.problems, "a ConfigError without a problem"
    assert error.lines() == error.problems
    paths = set(key_paths(doc)) | set(required_paths(doc))
    for line in error.problems:
        assert len(line.splitlines()) == 1, f"a problem spans lines: {line!r}"
        assert line.startswith(f"{SOURCE}: "), line
        rest = line.removeprefix(f"{SOURCE}: ")
        assert any(rest.startswith(f"{p}: ") for p in paths), f"names no key: {line!r}"
        for secret in secrets_of(environ):
            assert secret not in line, f"a secret in {line!r}"


def secrets_of(environ: Mapping[str, str]) -> list[str]:
    return [*SECRETS, *(v for k, v in environ.items()
                        if k != "CREDENTIALS_DIRECTORY" and v.strip())]


def check_config(config: Config, environ: Mapping[str, str]) -> None:
    """A decoded config hides its secrets and renders back to itself."""
    rendered = render_config(config)
    for secret in secrets_of(environ):
        assert secret not in repr(config)
        assert secret not in rendered
    assert parse_config(rendered, "rendered", environ) == config


# -- the tests ----------------------------------------------------------------------------


@dataclass(frozen=True)
class SecretFiles:
    directory: Path


@pytest.fixture(scope="module")
def secret_files(tmp_path_factory: pytest.TempPathFactory) -> SecretFiles:
    """One readable key file and one of every unreadable kind, for the whole module."""
    directory = tmp_path_factory.mktemp("secrets")
    (directory / "key").write_text(f"{FILE_SECRET}\n")
    (directory / "state-url").write_text(f"postgresql://crmsync:{DB_PASSWORD}@db/crmsync\n")
    (directory / "empty").write_text("\n")
    (directory / "binary").write_bytes(b"\xff\xfe" + FILE_SECRET.encode())
    (directory / "huge").write_text(FILE_SECRET * (MAX_SECRET_FILE_BYTES // len(FILE_SECRET) + 1))
    return SecretFiles(directory)


def decode(text: str, environ: Mapping[str, str]) -> Config | ConfigError:
    try:
        return parse_config(text, SOURCE, environ)
    except ConfigError as error:
        return error


@SETTINGS
@given(doc=st.one_of(documents(wild=True), documents(wild=False)), environ=environments())
# A key with a line break, and one with a dot: each problem stays one line that names it.
@example(doc={"daemon": {"log\nlevel": "info"}}, environ=BASE_ENV)
@example(doc={"quo": {"max.retries": 3, "": 1}}, environ=BASE_ENV)
# A NUL in a secret file's path: open() raises ValueError, not OSError.
@example(
    doc={"tenants": [{"id": "a", "crm": "attio", "quo_api_key": "file:a\x00b",
                      "crm_api_key": "env:CRM_KEY"}]},
    environ=BASE_ENV,
)
# A line break in a secret file's path is echoed by the "cannot be read" message.
@example(
    doc={"tenants": [{"id": "a", "crm": "attio", "quo_api_key": "file:a\nb",
                      "crm_api_key": "env:CRM_KEY"}]},
    environ=BASE_ENV,
)
def test_any_document_is_a_config_or_one_line_per_problem_naming_its_key(
    doc: dict[str, Any], environ: dict[str, str], secret_files: SecretFiles
) -> None:
    directory = str(secret_files.directory)
    doc = substitute(doc, directory)
    environ = substitute(environ, directory)
    text = to_toml(doc)
    parsed = tomllib.loads(text)
    assert same(parsed, doc), "the test wrote TOML that does not read back as generated"

    outcome = decode(text, environ)

    if isinstance(outcome, ConfigError):
        event(f"ConfigError ({min(len(outcome.problems), 3)}+ problems)")
        check_problems(outcome, parsed, environ)
    else:
        event(f"Config ({len(outcome.tenants)} tenants)")
        check_config(outcome, environ)


TOMLISH = st.text(alphabet=st.sampled_from(list("[]{}=\"'.,#\n\t abz019-_:+eEtTZ\\")),
                  max_size=60)


@settings(max_examples=400, deadline=None)
@given(text=st.one_of(TOMLISH, st.text(alphabet=st.characters(codec="utf-8"), max_size=60)))
# tomllib recurses per nesting level: deep arrays or inline tables are a RecursionError.
@example(text="x = " + "[" * 5000)
@example(text="x = " + "{a = " * 3000)
# tomllib's int() refuses more than 4300 digits with a ValueError.
@example(text="x = 1" + "0" * 5000)
def test_text_that_is_not_toml_is_one_problem_line(text: str) -> None:
    outcome = decode(text, BASE_ENV)
    if isinstance(outcome, ConfigError):
        try:
            parsed: Any = tomllib.loads(text)
        except (ValueError, RecursionError):
            assert len(outcome.problems) == 1
            [line] = outcome.problems
            assert line.startswith(f"{SOURCE}: invalid TOML: ")
            assert len(line.splitlines()) == 1
        else:
            check_problems(outcome, parsed, BASE_ENV)


@settings(max_examples=200, deadline=None)
@given(data=st.one_of(st.binary(max_size=60), TOMLISH.map(str.encode)))
@example(data=b'[daemon]\nstate_path = "caf\xe9"\n')
@example(data=b"\xef\xbb\xbf[http]\nport = 1\n")
def test_a_file_of_any_bytes_is_a_config_or_a_config_error(
    data: bytes, secret_files: SecretFiles
) -> None:
    path = secret_files.directory / "crmsync.toml"
    path.write_bytes(data)
    try:
        load_config(path, BASE_ENV)
    except ConfigError as error:
        assert error.problems
        for line in error.problems:
            assert line.startswith(f"{path}: "), line
            assert len(line.splitlines()) == 1, line
