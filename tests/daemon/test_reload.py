"""Reload planning: which tenants a new config adds, removes, restarts or keeps, and
which daemon settings apply live, to shared resources or only after a restart."""

from __future__ import annotations

from crmsync.config import Config, parse_config
from crmsync.daemon.reload import plan_reload

ENV = {"A_QUO": "qa", "A_CRM": "ca", "B_QUO": "qb", "B_CRM": "cb", "C_QUO": "qc", "C_CRM": "cc"}
TOKENS = {**ENV, "OLD_TOKEN": "old-token", "NEW_TOKEN": "new-token"}


def config(*tenants: str, head: str = "", environ: dict[str, str] | None = None,
           disabled: tuple[str, ...] = ()) -> Config:
    text = head
    for tenant in tenants:
        upper = tenant.upper()
        text += (
            f'\n[[tenants]]\nid = "{tenant}"\ncrm = "attio"\n'
            f'quo_api_key = "env:{upper}_QUO"\ncrm_api_key = "env:{upper}_CRM"\n'
            f"enabled = {'false' if tenant in disabled else 'true'}\n"
        )
    return parse_config(text, "test.toml", environ or ENV)


def test_plan_adds_removes_restarts_and_keeps() -> None:
    old = config("a", "b", "c")
    new = parse_config(
        "[[tenants]]\nid = 'a'\ncrm = 'attio'\nquo_api_key = 'env:A_QUO'\n"
        "crm_api_key = 'env:A_CRM'\n"
        "[[tenants]]\nid = 'b'\ncrm = 'attio'\nquo_api_key = 'env:B_QUO'\n"
        "crm_api_key = 'env:B_CRM'\npage_size = 50\n"
        "[[tenants]]\nid = 'd'\ncrm = 'attio'\nquo_api_key = 'env:C_QUO'\n"
        "crm_api_key = 'env:C_CRM'\n",
        "test.toml", ENV,
    )
    plan = plan_reload(old, new)
    assert [t.id for t in plan.start] == ["d"]
    assert plan.stop == ["c"]
    assert list(plan.restart) == ["b"]
    assert plan.restart_reasons == {"b": "page_size changed"}
    assert plan.unchanged == ["a"]
    assert not (plan.live or plan.shared or plan.needs_restart)
    assert plan.summary() == (
        "1 added [d], 1 removed [c], 1 restarted [b (page_size changed)], 1 unchanged"
    )
    assert plan.effective == new


def test_plan_restarts_a_tenant_whose_secret_rotated_and_never_shows_it() -> None:
    old = config("a", "b")
    new = config("a", "b", environ={**ENV, "B_QUO": "rotated-SECRET"})
    plan = plan_reload(old, new)
    assert list(plan.restart) == ["b"]
    assert plan.restart_reasons["b"] == "quo_api_key changed"
    assert "rotated-SECRET" not in plan.summary()
    assert plan.unchanged == ["a"]


def test_plan_treats_disabled_tenants_as_absent() -> None:
    plan = plan_reload(config("a", "b"), config("a", "b", disabled=("b",)))
    assert plan.stop == ["b"] and not plan.start and not plan.restart
    plan = plan_reload(config("a", "b", disabled=("b",)), config("a", "b"))
    assert [t.id for t in plan.start] == ["b"] and not plan.stop


def test_a_new_admin_token_applies_live_without_restarting_tenants() -> None:
    """The management API checks the running config's token on each request."""
    old = config("a", head='[http]\nadmin_token = "env:OLD_TOKEN"\n', environ=TOKENS)
    new = config("a", head='[http]\nadmin_token = "env:NEW_TOKEN"\n', environ=TOKENS)
    plan = plan_reload(old, new)
    assert plan.live == ["http.admin_token"]
    assert not plan.restart and not plan.shared and plan.unchanged == ["a"]


def test_plan_sorts_daemon_settings() -> None:
    old = config("a", "b", head='[daemon]\nstate_path = "one.db"\n[http]\nport = 8000\n')
    new = config("a", "b", head=(
        '[daemon]\nstate_path = "two.db"\nlog_level = "debug"\nshutdown_timeout = 5\n'
        '[http]\nport = 9000\n[quo]\nrequests_per_second = 20\n'
    ))
    plan = plan_reload(old, new)
    assert plan.needs_restart == ["daemon.state_path", "http.port"]
    assert plan.live == ["daemon.log_level", "daemon.shutdown_timeout"]
    assert plan.shared == ["quo.requests_per_second"]
    # Every tenant is built from [quo]: all restart; nothing bound at start changes.
    assert list(plan.restart) == ["a", "b"]
    assert plan.restart_reasons["a"] == "quo.requests_per_second changed"
    assert plan.effective.daemon.state_path == "one.db"
    assert plan.effective.http.port == 8000
    assert plan.effective.daemon.log_level == "debug"
    assert plan.effective.quo.requests_per_second == 20
    # The next reload of the same file reports the fixed settings again, nothing else.
    again = plan_reload(plan.effective, new)
    assert again.needs_restart == ["daemon.state_path", "http.port"]
    assert again.empty and again.unchanged == ["a", "b"]
