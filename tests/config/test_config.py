"""`crmsync.config`: decoding, defaults, every-problem validation, secrets and rendering."""

from __future__ import annotations

from pathlib import Path

import msgspec
import msgspec.inspect as mi
import pytest

from crmsync.config import (
    Config,
    Secret,
    TenantConfig,
    load_config,
    parse_config,
    render_config,
)
from crmsync.errors import ConfigError

REPO_ROOT = Path(__file__).resolve().parents[2]
QUO_KEY = "sk-SECRET-1234"
ATTIO_KEY = "attio-SECRET-5678"
ENV = {"ACME_QUO_API_KEY": QUO_KEY, "ACME_ATTIO_API_KEY": ATTIO_KEY}


def tenant(**overrides: str) -> str:
    """A valid [[tenants]] block; an override replaces or adds a key, an empty one drops it."""
    lines = {
        "id": '"acme"',
        "crm": '"attio"',
        "quo_api_key": '"env:ACME_QUO_API_KEY"',
        "crm_api_key": '"env:ACME_ATTIO_API_KEY"',
    } | overrides
    body = "".join(f"{key} = {value}\n" for key, value in lines.items() if value)
    return "[[tenants]]\n" + body


def problems(text: str, environ: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(text, "crmsync.toml", ENV if environ is None else environ)
    return info.value.problems


def test_empty_file_means_all_defaults() -> None:
    config = parse_config("", "crmsync.toml", {})
    assert config == Config()
    assert config.daemon.log_level == "info"
    assert config.daemon.log_format == "text"
    assert config.daemon.inbox_retry_hours == 24.0
    assert config.daemon.inbox_retention_days == 30.0
    assert config.http.port == 8787
    assert config.http.public_url is None
    assert config.quo.requests_per_second == 10
    assert config.quo.rate_limit_margin == 0.02
    assert config.tenants == ()


def test_tenant_is_decoded_with_defaults_and_resolved_secrets() -> None:
    config = parse_config(tenant(poll_interval="60"), "crmsync.toml", ENV)
    acme = config.tenant("acme")
    assert isinstance(acme, TenantConfig)
    assert config.tenant("other") is None
    assert acme.crm == "attio"
    assert acme.quo_api_key.reveal() == QUO_KEY
    assert acme.crm_api_key.reference == "env:ACME_ATTIO_API_KEY"
    assert acme.crm_webhook_secret is None
    assert acme.object_types == ("people",)
    assert acme.page_size == 100
    assert acme.enabled is True
    assert acme.poll_interval == 60.0
    assert isinstance(acme.poll_interval, float)  # TOML integers become float seconds


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[quo]\nrps = 5\n", "quo.rps: unknown key"),
        (
            "[quo]\nrequest_per_second = 5\n",
            "quo.request_per_second: unknown key (did you mean 'requests_per_second'?)",
        ),
        ("[deamon]\n", "deamon: unknown key (did you mean 'daemon'?)"),
        ('[http]\nport = "8787"\n', "http.port: expected an integer, got a string"),
        ("[http]\nport = 80.5\n", "http.port: expected an integer, got a number"),
        ("[quo]\nmax_retries = true\n", "quo.max_retries: expected an integer, got a boolean"),
        ('[quo]\nbulk_create = "no"\n', "quo.bulk_create: expected a boolean, got a string"),
        (
            "[daemon]\nstate_path = 1979-05-27\n",
            "daemon.state_path: expected a string, got a date/time",
        ),
        ("daemon = 5\n", "daemon: expected a table, got an integer"),
        (
            '[tenants]\nid = "acme"\n',
            "tenants: expected an array of tables ([[tenants]]), got a table",
        ),
        (
            "[daemon]\nshutdown_timeout = 0\n",
            "daemon.shutdown_timeout: must be between 1 and 3600, got 0",
        ),
        (
            "[daemon]\nmax_error_rate = nan\n",
            "daemon.max_error_rate: must be between 0 and 1, got nan",
        ),
        (
            "[daemon]\ninbox_retry_hours = -1\n",
            "daemon.inbox_retry_hours: must be between 0 and 720, got -1",
        ),
        (
            "[daemon]\ninbox_retention_days = 0.5\n",
            "daemon.inbox_retention_days: must be between 1 and 3650, got 0.5",
        ),
        ("[http]\nport = 70000\n", "http.port: must be between 0 and 65535, got 70000"),
        (
            "[quo]\nrate_limit_margin = 0.6\n",
            "quo.rate_limit_margin: must be between 0 and 0.5, got 0.6",
        ),
        ('[http]\nhost = ""\n', "http.host: must not be empty"),
        (
            '[daemon]\nlog_format = "xml"\n',
            "daemon.log_format: must be one of: json, text, got 'xml'",
        ),
        (
            '[quo]\nbase_url = "api.openphone.com"\n',
            "quo.base_url: must be an http:// or https:// URL, got 'api.openphone.com'",
        ),
        (
            '[http]\npublic_url = "https://"\n',
            "http.public_url: must be an http:// or https:// URL, got 'https://'",
        ),
        (
            tenant(id='"Acme"'),
            "tenants[0].id: invalid tenant id 'Acme' (expected 1-63 lowercase letters, "
            "digits or '-', starting with a letter or digit)",
        ),
        (tenant(crm=""), "tenants[0].crm: required key is missing"),
        (tenant(object_types="[]"), "tenants[0].object_types: must not be empty"),
        (tenant(object_types='[""]'), "tenants[0].object_types[0]: must not be empty"),
        (
            tenant(object_types='["people", 1]'),
            "tenants[0].object_types[1]: expected a string, got an integer",
        ),
        (tenant(page_size="501"), "tenants[0].page_size: must be between 1 and 500, got 501"),
        (
            tenant(crm_base_url='"localhost:8080"'),
            "tenants[0].crm_base_url: must be an http:// or https:// URL, got 'localhost:8080'",
        ),
        (
            tenant(crm_webhook_secret="5"),
            "tenants[0].crm_webhook_secret: expected a string, got an integer",
        ),
    ],
)
def test_each_problem_is_one_line_naming_the_key(text: str, expected: str) -> None:
    assert problems(text) == [f"crmsync.toml: {expected}"]


# "acme\\n": a TOML escape, so the id really ends in a newline (it once matched `$`).
@pytest.mark.parametrize("tenant_id", ["-acme", "acme_corp", "a" * 64, "", "acme\\n"])
def test_tenant_id_pattern(tenant_id: str) -> None:
    [line] = problems(tenant(id=f'"{tenant_id}"'))
    assert line.startswith("crmsync.toml: tenants[0].id: invalid tenant id ")


def test_longest_tenant_id_is_accepted() -> None:
    config = parse_config(tenant(id=f'"{"a" * 63}"'), "crmsync.toml", ENV)
    assert config.tenants[0].id == "a" * 63


def test_unknown_crm_lists_the_known_ones() -> None:
    text = tenant() + tenant(id='"beta"', crm='"atio"')
    assert problems(text) == [
        "crmsync.toml: tenants[1].crm: unknown CRM 'atio' (expected one of: attio, pipedrive, "
        "hubspot)"
    ]


def test_duplicate_tenant_id_names_the_first() -> None:
    text = tenant() + tenant(id='"beta"') + tenant()
    assert problems(text) == [
        "crmsync.toml: tenants[2].id: duplicate tenant id 'acme' (also tenants[0])"
    ]


def test_toml_syntax_error_has_line_and_column() -> None:
    [line] = problems('[daemon]\nlog_level "info"\n')
    assert line.startswith("crmsync.toml: invalid TOML: ")
    assert "(at line 2, column 11)" in line


def test_every_problem_is_reported_in_file_order() -> None:
    text = (
        '[daemon]\nlog_level = "loud"\n[http]\nport = "x"\n[quo]\nrps = 5\n'
        + tenant(crm='"atio"', quo_api_key=f'"{QUO_KEY}"')
        + tenant(crm_api_key='"env:MISSING_KEY"')
    )
    assert problems(text) == [
        "crmsync.toml: daemon.log_level: must be one of: debug, error, info, warning, got 'loud'",
        "crmsync.toml: http.port: expected an integer, got a string",
        "crmsync.toml: quo.rps: unknown key",
        "crmsync.toml: tenants[0].crm: unknown CRM 'atio' (expected one of: attio, pipedrive, "
        "hubspot)",
        "crmsync.toml: tenants[0].quo_api_key: secrets must be 'env:NAME' or 'file:PATH', "
        "not inline values",
        "crmsync.toml: tenants[1].crm_api_key: environment variable MISSING_KEY is not set",
        "crmsync.toml: tenants[1].id: duplicate tenant id 'acme' (also tenants[0])",
    ]


# -- secrets ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reference", "environ", "expected"),
    [
        (QUO_KEY, ENV, "secrets must be 'env:NAME' or 'file:PATH', not inline values"),
        ("env:ACME_QUO_API_KEY", {}, "environment variable ACME_QUO_API_KEY is not set"),
        (
            "env:ACME_QUO_API_KEY",
            {"ACME_QUO_API_KEY": " "},
            "environment variable ACME_QUO_API_KEY is empty",
        ),
        (f"env:{QUO_KEY}", ENV, "'env:' must be followed by an environment variable name"),
        ("file:", ENV, "'file:' must be followed by a path"),
        (
            "file:%d/acme-quo",
            {},
            "file:%d/acme-quo uses %d but CREDENTIALS_DIRECTORY is not set "
            "(systemd sets it for LoadCredential=)",
        ),
    ],
)
def test_bad_secret_reference(reference: str, environ: dict[str, str], expected: str) -> None:
    text = tenant(quo_api_key=f'"{reference}"')
    lines = problems(text, {"ACME_ATTIO_API_KEY": ATTIO_KEY} | environ)
    assert lines == [f"crmsync.toml: tenants[0].quo_api_key: {expected}"]
    assert QUO_KEY not in lines[0]


def test_file_secret_is_read_and_trailing_whitespace_stripped(tmp_path: Path) -> None:
    key_file = tmp_path / "quo-key"
    key_file.write_text(f"{QUO_KEY}\n\n")
    config = parse_config(tenant(quo_api_key=f'"file:{key_file}"'), "crmsync.toml", ENV)
    assert config.tenants[0].quo_api_key.reveal() == QUO_KEY
    assert config.tenants[0].quo_api_key.reference == f"file:{key_file}"


def test_file_secret_expands_credentials_directory(tmp_path: Path) -> None:
    (tmp_path / "acme-quo").write_text(QUO_KEY)
    environ = ENV | {"CREDENTIALS_DIRECTORY": str(tmp_path)}
    config = parse_config(tenant(quo_api_key='"file:%d/acme-quo"'), "crmsync.toml", environ)
    assert config.tenants[0].quo_api_key.reveal() == QUO_KEY
    assert config.tenants[0].quo_api_key.reference == "file:%d/acme-quo"


def test_unreadable_secret_files_say_why_without_content(tmp_path: Path) -> None:
    huge = tmp_path / "huge"
    huge.write_text(QUO_KEY * 10_000)
    binary = tmp_path / "binary"
    binary.write_bytes(b"\xff\xfe" + QUO_KEY.encode())
    empty = tmp_path / "empty"
    empty.write_text("\n")
    references = [tmp_path / "missing", tmp_path, huge, binary, empty]
    text = "".join(
        tenant(id=f'"t{i}"', quo_api_key=f'"file:{path}"') for i, path in enumerate(references)
    )
    assert problems(text) == [
        f"crmsync.toml: tenants[0].quo_api_key: file {tmp_path}/missing cannot be read: "
        "No such file or directory",
        f"crmsync.toml: tenants[1].quo_api_key: file {tmp_path} cannot be read: Is a directory",
        f"crmsync.toml: tenants[2].quo_api_key: file {huge} is larger than 65536 bytes "
        "(expected one value)",
        f"crmsync.toml: tenants[3].quo_api_key: file {binary} is not UTF-8 text",
        f"crmsync.toml: tenants[4].quo_api_key: file {empty} is empty",
    ]


def test_secret_never_shows_its_value() -> None:
    secret = Secret("env:ACME_QUO_API_KEY", QUO_KEY)
    assert repr(secret) == "Secret('env:ACME_QUO_API_KEY')"
    assert str(secret) == repr(secret)
    assert f"{secret}" == repr(secret)
    assert secret.reveal() == QUO_KEY
    config = parse_config(tenant(), "crmsync.toml", ENV)
    assert QUO_KEY not in repr(config)
    assert ATTIO_KEY not in repr(config)


def test_secrets_compare_by_reference_and_value() -> None:
    secret = Secret("env:A", "one")
    assert secret == Secret("env:A", "one")
    assert hash(secret) == hash(Secret("env:A", "one"))
    assert secret != Secret("env:A", "two")  # a rotated key is a config change
    assert secret != Secret("env:B", "one")


# -- rendering -------------------------------------------------------------------------


def test_render_masks_secrets_and_parses_back_to_the_same_config() -> None:
    text = '[http]\npublic_url = "https://sync.example.com"\n' + tenant(
        object_types='["people", "companies"]'
    )
    config = parse_config(text, "crmsync.toml", ENV)
    rendered = render_config(config)
    assert QUO_KEY not in rendered
    assert ATTIO_KEY not in rendered
    assert f'quo_api_key = "env:ACME_QUO_API_KEY"  # resolved, {len(QUO_KEY)} chars' in rendered
    assert "# crm_webhook_secret is not set" in rendered
    assert 'object_types = ["people", "companies"]' in rendered
    assert "rate_limit_margin = 0.02" in rendered
    assert parse_config(rendered, "rendered", ENV) == config


def test_a_metakocka_link_and_the_admin_token_render_and_parse_back() -> None:
    """INTERFACE §8/§9: `[tenants.metakocka]` follows its tenant's keys; secrets masked."""
    env = {**ENV, "ACME_MK_SECRET": "mk-secret-value", "ADMIN": "admin-token-value"}
    text = '[http]\nadmin_token = "env:ADMIN"\n' + tenant() + (
        '[tenants.metakocka]\ncompany_id = "16"\nsecret_key = "env:ACME_MK_SECRET"\n'
        'direction = "to_metakocka"\n'
    )
    config = parse_config(text, "crmsync.toml", env)
    link = config.tenants[0].metakocka
    assert link is not None
    assert (link.company_id, link.direction, link.discover_from) == (
        "16", "to_metakocka", ("sales_order",))
    rendered = render_config(config)
    assert "mk-secret-value" not in rendered and "admin-token-value" not in rendered
    assert "\n[tenants.metakocka]\ncompany_id = \"16\"\n" in rendered
    assert parse_config(rendered, "rendered", env) == config


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ('company_id = "16a"', "tenants[0].metakocka.company_id: must be Metakocka's numeric"
                               " company id, got '16a'"),
        ("poll_interval = 1", "tenants[0].metakocka.poll_interval: must be between 5 and"
                              " 86400, got 1"),
        ('direction = "sideways"', "tenants[0].metakocka.direction"),
    ],
)
def test_a_bad_metakocka_link_names_its_key(line: str, problem: str) -> None:
    key, _, _ = line.partition(" = ")
    fields = {"company_id": '"16"', "secret_key": '"env:ACME_MK_SECRET"'}
    fields[key] = line.partition(" = ")[2]
    table = "".join(f"{k} = {v}\n" for k, v in fields.items())
    text = tenant() + "[tenants.metakocka]\n" + table
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "crmsync.toml", {**ENV, "ACME_MK_SECRET": "x"})
    assert problem in str(caught.value)


def test_render_quotes_strings_as_toml() -> None:
    odd = 'a "quoted"\\ path\x7f\té'
    config = Config(daemon=msgspec.structs.replace(Config().daemon, state_path=odd))
    assert parse_config(render_config(config), "rendered", {}).daemon.state_path == odd


# -- the schema itself -----------------------------------------------------------------


def _numbers(t: mi.Type, path: str) -> list[tuple[str, mi.IntType | mi.FloatType]]:
    match t:
        case mi.StructType(fields=fields):
            return [n for f in fields for n in _numbers(f.type, f"{path}.{f.name}")]
        case mi.VarTupleType(item_type=item) | mi.Metadata(type=item):
            return _numbers(item, path)
        case mi.UnionType(types=types):
            return [n for member in types for n in _numbers(member, path)]
        case mi.IntType() | mi.FloatType():
            return [(path, t)]
    return []


def test_every_number_has_both_bounds() -> None:
    numbers = _numbers(mi.type_info(Config), "config")
    assert len(numbers) > 10
    unbounded = [path for path, t in numbers if t.ge is None or t.le is None]
    assert unbounded == []  # the validator's "must be between" message relies on it


# -- loading files ---------------------------------------------------------------------


def test_example_config_validates() -> None:
    config = load_config(REPO_ROOT / "crmsync.toml", ENV)
    acme = config.tenant("acme")
    assert acme is not None
    assert acme.crm == "attio"
    assert acme.quo_api_key.reveal() == QUO_KEY


def test_missing_config_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    with pytest.raises(ConfigError) as info:
        load_config(path, ENV)
    assert info.value.problems == [f"{path}: cannot read config file: No such file or directory"]


def test_config_file_must_be_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes(b'[daemon]\nstate_path = "caf\xe9"\n')
    with pytest.raises(ConfigError) as info:
        load_config(path, ENV)
    assert info.value.problems == [f"{path}: config file is not UTF-8 text (line 2)"]


def test_default_location_prefers_cwd_then_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    elsewhere = tmp_path / "elsewhere.toml"
    elsewhere.write_text("[http]\nport = 1\n")
    with pytest.raises(ConfigError) as info:
        load_config(None, {})
    assert info.value.problems == [
        "no config file: pass -c PATH, create ./crmsync.toml or set CRMSYNC_CONFIG"
    ]
    assert load_config(None, {"CRMSYNC_CONFIG": str(elsewhere)}).http.port == 1
    (tmp_path / "crmsync.toml").write_text("[http]\nport = 2\n")
    assert load_config(None, {"CRMSYNC_CONFIG": str(elsewhere)}).http.port == 2
