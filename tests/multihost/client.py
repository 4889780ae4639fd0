"""The load of the multi-host tests: a platform service on its own host that
enqueues through every API host in turn (POST /jobs/batch, HMAC-signed as
order-service), run as ``python -m tests.multihost.client`` inside the
client's namespace. Prints one JSON object: the ids and each API's share.

Batches carry idempotency keys, so a batch retried after a connection error
(an API host still starting) cannot enqueue twice.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

import httpx
import orjson

from queue_service.client import ServiceClient


async def enqueue(args: argparse.Namespace) -> dict[str, object]:
    clients = [ServiceClient(url, "order-service", args.secret, args.tenant) for url in args.api]
    ids: list[str] = []
    per_api = {url: 0 for url in args.api}
    try:
        for n, start in enumerate(range(0, args.jobs, args.batch)):
            jobs = [
                {
                    "type": args.type,
                    "data": {"seconds": args.seconds},
                    "idempotency_key": f"{args.tag}-{i}",
                }
                for i in range(start, min(start + args.batch, args.jobs))
            ]
            client = clients[n % len(clients)]
            deadline = time.monotonic() + args.connect_timeout
            while True:
                try:
                    response = await client.request("POST", "/jobs/batch", {"jobs": jobs})
                    break
                except httpx.TransportError:
                    if time.monotonic() > deadline:
                        raise
                    await asyncio.sleep(0.2)
            if response.status_code != 201:
                sys.exit(f"POST /jobs/batch: {response.status_code} {response.text}")
            ids += [job["id"] for job in response.json()["jobs"]]
            per_api[args.api[n % len(clients)]] += len(jobs)
            if args.pause:
                await asyncio.sleep(args.pause)
    finally:
        for client in clients:
            await client.aclose()
    return {"ids": ids, "per_api": per_api}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--api", action="append", required=True, help="an API host's base URL")
    parser.add_argument("--secret", required=True, help="INTERNAL_HMAC_SECRET of the APIs")
    parser.add_argument("--tenant", default="t1")
    parser.add_argument("--type", default="test.sleep")
    parser.add_argument("--seconds", type=float, default=0.2, help="each job's sleep")
    parser.add_argument("--jobs", type=int, default=100)
    parser.add_argument("--batch", type=int, default=20)
    parser.add_argument("--pause", type=float, default=0.0, help="seconds between batches")
    parser.add_argument("--tag", default="load", help="idempotency key prefix")
    parser.add_argument("--connect-timeout", type=float, default=60.0)
    args = parser.parse_args()
    sys.stdout.buffer.write(orjson.dumps(asyncio.run(enqueue(args))) + b"\n")


if __name__ == "__main__":
    main()
