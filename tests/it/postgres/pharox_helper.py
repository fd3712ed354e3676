"""Drive pharox's own PostgreSQL adapter for the pharox-exporter tests.

Usage: pharox_helper.py COMMAND SQLALCHEMY_URL  (JSON on stdin, JSON on stdout)

Every read and write goes through pharox's public API (PostgresStorage,
ProxyManager, HealthCheckOrchestrator), so the tests check compatibility
with pharox as its users see it, not with our reading of its schema.

Commands:
  schema   create pharox's tables (pharox's own SQLAlchemy metadata)
  seed     {"pools": [{id, name}], "proxies": [{id, pool_id, host, port,
           protocol, status, credentials?, source?, country?, city?, isp?,
           asn?, max_concurrency?}], "leases": [{proxy_id, consumer,
           duration_seconds, expires_in_seconds?}]}  -> {"leases": [ids]}
  apply    [HealthCheckResult fields] -> applied with HealthCheckOrchestrator
  read     {"proxy_ids": [...]} -> proxies, last health results, records, leases
  cleanup  {} -> {"released": n} from PostgresStorage.cleanup_expired_leases
  acquire  {pool, consumer, n, duration_seconds} -> {"acquired": n}
  lease_by {pool, consumer, filters: ProxyFilters fields} -> {"leased": [proxy ids]}:
           ProxyManager.acquire_proxy with those filters until none is left,
           then every lease released
  geo      {"proxy_ids": [...]} -> {id: {country, city, latitude, longitude, isp, asn}}
           as pharox's own Proxy model reads them
  check    {target_url, timeout?, proxy_ids} -> pharox's HealthChecker checks the
           proxies for real and its orchestrator stores the results
"""

import asyncio
import json
import sys
from datetime import datetime, timedelta, timezone
from uuid import UUID

from sqlalchemy import create_engine, update

from pharox import ProxyManager
from pharox.health import HealthCheckOrchestrator
from pharox.models import (
    HealthCheckResult,
    Proxy,
    ProxyCredentials,
    ProxyPool,
    ProxyProtocol,
    ProxyStatus,
)
from pharox.storage.postgres import PostgresStorage, metadata
from pharox.storage.postgres.tables import lease_table


def iso(dt):
    return None if dt is None else dt.astimezone(timezone.utc).isoformat()


def cmd_schema(engine, storage, _inp):
    metadata.create_all(engine)
    return {"ok": True}


def cmd_seed(engine, storage, inp):
    for p in inp.get("pools", []):
        storage.save_pool(ProxyPool(id=UUID(p["id"]), name=p["name"]))
    proxies = []
    for p in inp.get("proxies", []):
        creds = p.get("credentials")
        proxies.append(
            Proxy(
                id=UUID(p["id"]),
                pool_id=UUID(p["pool_id"]),
                host=p["host"],
                port=p["port"],
                protocol=ProxyProtocol(p["protocol"]),
                status=ProxyStatus(p.get("status", "inactive")),
                credentials=ProxyCredentials(**creds) if creds else None,
                source=p.get("source"),
                country=p.get("country"),
                city=p.get("city"),
                isp=p.get("isp"),
                asn=p.get("asn"),
                max_concurrency=p.get("max_concurrency"),
                checked_at=datetime.now(timezone.utc) - timedelta(hours=1),
            )
        )
    if proxies:
        storage.add_proxies_bulk(proxies)
    lease_ids = []
    for l in inp.get("leases", []):
        proxy = storage.get_proxy(l["proxy_id"])
        lease = storage.create_lease(proxy, l["consumer"], l.get("duration_seconds", 300))
        if "expires_in_seconds" in l:
            # pharox has no API to age a lease; the tests need expired ones.
            with engine.begin() as conn:
                conn.execute(
                    update(lease_table)
                    .where(lease_table.c.id == lease.id)
                    .values(
                        expires_at=datetime.now(timezone.utc)
                        + timedelta(seconds=l["expires_in_seconds"])
                    )
                )
        lease_ids.append(str(lease.id))
    return {"leases": lease_ids}


def cmd_apply(engine, storage, inp):
    orch = HealthCheckOrchestrator(storage)
    for r in inp:
        res = HealthCheckResult(
            proxy_id=UUID(r["proxy_id"]),
            status=ProxyStatus(r["status"]),
            latency_ms=r["latency_ms"],
            protocol=ProxyProtocol(r["protocol"]),
            checked_at=datetime.fromisoformat(r["checked_at"]),
            error_message=r.get("error_message"),
        )
        asyncio.run(orch.apply_result_async(res))
    return {"applied": len(inp)}


def cmd_read(engine, storage, inp):
    out = {"proxies": {}, "leases": []}
    for pid in inp["proxy_ids"]:
        p = storage.get_proxy(pid)
        last = storage.get_last_health_result(UUID(pid))
        records = storage.list_health_records(UUID(pid), limit=100000)
        out["proxies"][pid] = {
            "status": p.status.value,
            "checked_at": iso(p.checked_at),
            "current_leases": p.current_leases,
            "credentials": p.credentials.model_dump() if p.credentials else None,
            "last": None
            if last is None
            else {
                "status": last.status.value,
                "latency_ms": last.latency_ms,
                "protocol": last.protocol.value,
                "checked_at": iso(last.checked_at),
                "error_message": last.error_message,
            },
            "records": [
                {
                    "id": str(r.id),
                    "checked_at": iso(r.checked_at),
                    "reachable": r.reachable,
                    "latency_ms": r.latency_ms,
                    "protocol": r.protocol.value,
                    "status_before": r.status_before.value if r.status_before else None,
                    "status_after": r.status_after.value,
                    "error": r.error,
                }
                for r in records
            ],
        }
    for l in storage.list_leases():
        out["leases"].append(
            {
                "id": str(l.id),
                "proxy_id": str(l.proxy_id),
                "status": l.status.value,
                "released_at": iso(l.released_at),
            }
        )
    return out


def cmd_check(engine, storage, inp):
    """pharox's own checker and orchestrator: check and persist real proxies."""
    from pharox.health import HealthChecker
    from pharox.models import HealthCheckOptions

    options = HealthCheckOptions(target_url=inp["target_url"], timeout=inp.get("timeout", 2.0))
    orch = HealthCheckOrchestrator(storage, HealthChecker(default_options=options))

    async def run():
        out = {}
        for pid in inp["proxy_ids"]:
            result = await orch.check_proxy(storage.get_proxy(pid))
            out[pid] = {"status": result.status.value, "error": result.error_message}
        return out

    return asyncio.run(run())


def cmd_cleanup(engine, storage, _inp):
    return {"released": storage.cleanup_expired_leases()}


def cmd_acquire(engine, storage, inp):
    manager = ProxyManager(storage)
    got = 0
    for _ in range(inp["n"]):
        lease = manager.acquire_proxy(
            inp["pool"], inp["consumer"], duration_seconds=inp.get("duration_seconds", 300)
        )
        if lease is not None:
            got += 1
    return {"acquired": got}


def cmd_lease_by(engine, storage, inp):
    from pharox.models import ProxyFilters

    manager = ProxyManager(storage)
    filters = ProxyFilters(**inp["filters"])
    leased = []
    # Bounded: a test seeds a handful of proxies.
    for _ in range(100):
        lease = manager.acquire_proxy(
            inp["pool"], inp["consumer"], duration_seconds=300, filters=filters
        )
        if lease is None:
            break
        leased.append(lease)
    ids = sorted(str(l.proxy_id) for l in leased)
    # Released again, so the next query sees every proxy (the tests seed
    # max_concurrency 1: each proxy is leased at most once per query).
    for lease in leased:
        manager.release_proxy(lease)
    return {"leased": ids}


def cmd_geo(engine, storage, inp):
    out = {}
    for pid in inp["proxy_ids"]:
        p = storage.get_proxy(pid)
        out[pid] = {
            "country": p.country,
            "city": p.city,
            "latitude": p.latitude,
            "longitude": p.longitude,
            "isp": p.isp,
            "asn": p.asn,
        }
    return out


COMMANDS = {
    "schema": cmd_schema,
    "seed": cmd_seed,
    "apply": cmd_apply,
    "read": cmd_read,
    "check": cmd_check,
    "cleanup": cmd_cleanup,
    "acquire": cmd_acquire,
    "lease_by": cmd_lease_by,
    "geo": cmd_geo,
}


def main():
    command, url = sys.argv[1], sys.argv[2]
    raw = sys.stdin.read()
    inp = json.loads(raw) if raw.strip() else {}
    engine = create_engine(url)
    try:
        out = COMMANDS[command](engine, PostgresStorage(engine), inp)
    finally:
        engine.dispose()
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
