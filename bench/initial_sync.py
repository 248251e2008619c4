"""Initial sync benchmark: N CRM people → Quo at limit L, single creates and bulk.

    python bench/initial_sync.py [--people 5000] [--limit 10] [--modes single,bulk]
    python bench/initial_sync.py --crm pipedrive|hubspot|attio [--people 2000]

Prints, per mode: utilisation = (Quo requests ÷ L) ÷ elapsed, Quo requests per contact,
429s, the simulator's max requests in any one-second window ÷ L, and the peak RSS of
the `crmsync sync` process (the simulators run in this process and are not counted).
With `--crm` (single creates against that CRM's simulator) it also prints the CRM
requests per contact and the CRM's 429s.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from common import crm_simulators, run_cli, simulators, write_config, write_crm_config


async def bench(people: int, limit: int, mode: str, page_size: int) -> dict[str, float]:
    bulk = mode == "bulk"
    async with simulators(people, limit) as sims:
        with tempfile.TemporaryDirectory() as tmp:
            config = write_config(Path(tmp), sims, limit, bulk=bulk, page_size=page_size)
            async with asyncio.timeout(people / limit * 3 + 120):
                run = await run_cli("sync", "--tenant", "bench", "-c", str(config))
        if run.returncode != 0:
            raise SystemExit(f"{mode}: crmsync sync exited {run.returncode}:\n{run.stderr}")
        stats = sims.quo.stats
        requests = stats.total_requests
        contacts = len(sims.quo.contacts.contacts)
        return {
            "people": people,
            "contacts_in_quo": contacts,
            "elapsed_s": run.elapsed,
            "quo_requests": requests,
            "utilisation": requests / limit / run.elapsed,
            "requests_per_contact": requests / people,
            "rate_limited_429": stats.rate_limited,
            "max_in_any_1s_window_over_limit": max(sims.quo.max_in_any_window.values()) / limit,
            "peak_rss_mib": run.peak_rss_mib,
        }


async def bench_crm(crm: str, people: int, limit: int, page_size: int) -> dict[str, float]:
    async with crm_simulators(crm, people, limit) as sims:
        with tempfile.TemporaryDirectory() as tmp:
            config = write_crm_config(Path(tmp), sims, limit, page_size=page_size)
            async with asyncio.timeout(people / limit * 3 + 120):
                run = await run_cli("sync", "--tenant", "bench", "-c", str(config),
                                    env={"BENCH_CRM_SECRET": sims.entry.webhook_secret or ""})
        if run.returncode != 0:
            raise SystemExit(f"{crm}: crmsync sync exited {run.returncode}:\n{run.stderr}")
        stats = sims.quo.stats
        requests = stats.total_requests
        live = len(sims.crm.record_ids())  # a seed may include deleted people
        return {
            "people_seeded": people,
            "people_live": live,
            "contacts_in_quo": len(sims.quo.contacts.contacts),
            "elapsed_s": run.elapsed,
            "utilisation": requests / limit / run.elapsed,
            "quo_requests_per_contact": requests / live,
            "crm_requests_per_contact": sims.crm.requests_answered() / live,
            "quo_429": stats.rate_limited,
            "crm_429": sims.crm.rate_limited(),
            "max_in_any_1s_window_over_limit": max(sims.quo.max_in_any_window.values()) / limit,
            "peak_rss_mib": run.peak_rss_mib,
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--people", type=int, default=5000)
    parser.add_argument("--limit", type=int, default=10)
    parser.add_argument("--page-size", type=int, default=100)
    parser.add_argument("--modes", default="single,bulk")
    parser.add_argument("--crm", default=None,
                        help="a CRM's simulator (single creates); default: Attio, both modes")
    args = parser.parse_args()
    if args.crm is not None:
        result = asyncio.run(bench_crm(args.crm, args.people, args.limit, args.page_size))
        print(f"[{args.crm}] " + "  ".join(
            f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in result.items()
        ), flush=True)
        return
    for mode in args.modes.split(","):
        result = asyncio.run(bench(args.people, args.limit, mode, args.page_size))
        print(f"[{mode}] " + "  ".join(
            f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in result.items()
        ), flush=True)


if __name__ == "__main__":
    main()
