#!/usr/bin/env python3
"""The pharox contender: HealthChecker.stream_health_checks over the bench inventory.

Prints one JSON line per result ({"id", "status", "latency_ms", "error_kind"})
and a JSON summary on stderr, like the other contenders.

pharox's stream_health_checks starts every check at once (one task per proxy,
no bound). For a comparison at equal concurrency the default wraps pharox's
own HTTPHealthCheckStrategy in a semaphore; --unbounded runs it as shipped.

pharox has no reason field, so only statuses are scored. An exception that
escapes pharox's strategy (it catches only httpx.HTTPError: SOCKS4 proxy URLs
make httpx raise ValueError) would end the whole stream, so the wrapper
catches it, hands pharox a placeholder result, and the script prints status
"error" (scored as wrong) for that proxy.
"""

import argparse
import asyncio
import csv
import json
import sys
import time
import uuid

from pharox import HealthCheckOptions, HealthChecker, Proxy, ProxyProtocol, ProxyStatus
from pharox.health import HTTPHealthCheckStrategy, HealthCheckStrategy
from pharox.models import HealthCheckResult, ProxyCredentials


class Bounded(HealthCheckStrategy):
    """pharox's own HTTP strategy, at most `limit` checks in flight."""

    def __init__(self, limit, errors):
        self._inner = HTTPHealthCheckStrategy()
        self._sem = asyncio.Semaphore(limit) if limit > 0 else None
        self._errors = errors

    async def check(self, proxy, options):
        try:
            if self._sem is None:
                return await self._inner.check(proxy, options)
            async with self._sem:
                return await self._inner.check(proxy, options)
        except Exception as exc:  # noqa: BLE001 - recorded, never hides the proxy
            # Returned as a result so the stream goes on; the script prints
            # status "error" for it, never a status pharox did not decide.
            self._errors[proxy.id] = type(exc).__name__
            return HealthCheckResult(
                proxy_id=proxy.id,
                status=ProxyStatus.INACTIVE,
                latency_ms=0,
                protocol=proxy.protocol,
                error_message=type(exc).__name__,
            )


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--inventory", required=True)
    ap.add_argument("--target-url", default="http://127.0.0.1:8080/")
    ap.add_argument("--timeout", type=float, default=2.0)
    ap.add_argument("--slow-threshold-ms", type=int, default=500)
    ap.add_argument("--concurrency", type=int, default=256)
    ap.add_argument("--unbounded", action="store_true")
    a = ap.parse_args()

    pool_ids = {}
    proxies = []
    ids = {}
    with open(a.inventory, newline="") as f:
        for row in csv.DictReader(f):
            creds = None
            if row.get("username"):
                creds = ProxyCredentials(user=row["username"], password=row["password"] or "-")
            pid = uuid.uuid4()
            ids[pid] = row["id"]
            proxies.append(
                Proxy(
                    id=pid,
                    host=row["host"],
                    port=int(row["port"]),
                    protocol=ProxyProtocol(row["protocol"]),
                    pool_id=pool_ids.setdefault(row["pool"], uuid.uuid4()),
                    credentials=creds,
                )
            )

    errors = {}
    strategy = Bounded(0 if a.unbounded else a.concurrency, errors)
    checker = HealthChecker(
        default_options=HealthCheckOptions(
            target_url=a.target_url,
            timeout=a.timeout,
            attempts=1,
            slow_threshold_ms=a.slow_threshold_ms,
            expected_status_codes=[200],
        ),
        strategies={p: strategy for p in ProxyProtocol},
    )

    counts = {}
    out = sys.stdout
    t0 = time.monotonic()
    async for res in checker.stream_health_checks(proxies):
        if res.proxy_id in errors:
            line = {"id": ids[res.proxy_id], "status": "error", "error_kind": errors[res.proxy_id]}
        else:
            kind = (res.error_message or "").split(":")[0][:60] or None
            line = {
                "id": ids[res.proxy_id],
                "status": res.status.value,
                "latency_ms": res.latency_ms,
                "error_kind": kind,
            }
        counts[line["status"]] = counts.get(line["status"], 0) + 1
        out.write(json.dumps(line) + "\n")
    out.flush()
    wall = time.monotonic() - t0
    print(
        json.dumps(
            {
                "checked": len(proxies),
                "wall_s": wall,
                "checks_per_s": len(proxies) / wall if wall else 0,
                "by_status": counts,
                "mode": "unbounded" if a.unbounded else f"semaphore({a.concurrency})",
            }
        ),
        file=sys.stderr,
    )


if __name__ == "__main__":
    asyncio.run(main())
