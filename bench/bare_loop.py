"""Yardstick client: the least an aiohttp program does to create every spec.

    QODER_PAT=... python bench/bare_loop.py API_URL JOBS.jsonl [CONCURRENCY]

One ClientSession, a semaphore, one POST per JSONL line (sent as is) with the
Authorization and a fresh Idempotency-Key header, the body read. Prints one JSON line:
``{"created", "failed", "wall_s", "creates_per_s"}`` (wall from the first request).
"""

import asyncio
import json
import os
import sys
import time
import uuid

import aiohttp


async def main(url: str, bodies: list[bytes], concurrency: int) -> None:
    auth = {"Authorization": f"Bearer {os.environ['QODER_PAT']}"}
    headers = {**auth, "Content-Type": "application/json"}
    gate = asyncio.Semaphore(concurrency)
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:

        async def create(body: bytes) -> bool:
            key = {"Idempotency-Key": str(uuid.uuid4())}
            async with (
                gate,
                session.post(f"{url}/environments", data=body, headers=key) as r,
            ):
                await r.read()
                return r.status == 201

        started = time.perf_counter()
        created = sum(await asyncio.gather(*(create(body) for body in bodies)))
        wall_s = time.perf_counter() - started
    figures = {"created": created, "failed": len(bodies) - created, "wall_s": wall_s}
    print(json.dumps({**figures, "creates_per_s": created / wall_s}))


if __name__ == "__main__":
    with open(sys.argv[2], "rb") as fh:
        lines = [line for line in fh if line.strip()]
    asyncio.run(main(sys.argv[1], lines, int(sys.argv[3]) if len(sys.argv) > 3 else 64))
