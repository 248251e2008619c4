"""A CRM simulator's line in the registry (`crmsync.sim.crms.CrmSimEntry`), built once.

Every CRM's `entry` module does the same with its own server functions: turn the
demo's or the CLI's `SimOptions` into the simulator's config (the keys, or the
default key; people; seed; and `rate` in the CRM's own terms, `with_rate`), run it
for the demo behind a `CrmSimulator` view, or serve it until cancelled.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Protocol, TypeVar

from crmsync.sim.crms import CrmSimEntry, CrmSimulator, SimOptions

C = TypeVar("C")
C_co = TypeVar("C_co", covariant=True)
C_contra = TypeVar("C_contra", contravariant=True)
S = TypeVar("S")
S_co = TypeVar("S_co", covariant=True)


class ConfigType(Protocol[C_co]):
    """A simulator's config class: keys, people and seed; the rest defaulted."""

    def __call__(self, *, api_keys: list[str], people: int, seed: int) -> C_co: ...


class Runner(Protocol[C_contra, S_co]):
    """`run_<crm>_simulator`: serve one on a free port, yield it and its base URL."""

    def __call__(
        self, host: str = ..., port: int = ..., config: C_contra | None = ...
    ) -> AbstractAsyncContextManager[tuple[S_co, str]]: ...


def crm_entry(
    *,
    title: str,
    default_key: str,
    webhook_secret: str | None,
    config_type: ConfigType[C],
    with_rate: Callable[[C, int], C],
    run: Runner[C, S],
    serve_forever: Callable[[str, int, C], Awaitable[None]],
    view: Callable[[S], CrmSimulator],
) -> CrmSimEntry:
    """The `CrmSimEntry` of a simulator with these server functions."""

    def config_of(options: SimOptions) -> C:
        config = config_type(
            api_keys=list(options.api_keys) or [default_key],
            people=options.people, seed=options.seed,
        )
        return config if options.rate is None else with_rate(config, options.rate)

    @contextlib.asynccontextmanager
    async def run_for_demo(options: SimOptions) -> AsyncIterator[tuple[CrmSimulator, str]]:
        async with run(config=config_of(options)) as (sim, url):
            yield view(sim), url

    async def serve(host: str, port: int, options: SimOptions) -> None:
        await serve_forever(host, port, config_of(options))

    return CrmSimEntry(
        title=title, default_key=default_key, webhook_secret=webhook_secret,
        run=run_for_demo, serve_forever=serve,
    )
