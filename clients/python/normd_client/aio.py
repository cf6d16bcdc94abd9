"""asyncio face of the client. Not a second implementation: each call runs
the sync client on a worker thread (asyncio.to_thread), so one call in flight
holds one thread of the loop's default executor for up to its deadline plus
slack. That is cheap next to normd's answer times, but it is not free: a
service with thousands of concurrent calls wants a bigger executor
(loop.set_default_executor) or the sync client in its own threads.
The fallback function runs on that worker thread too, so it must be a plain
function, not a coroutine.
"""
from __future__ import annotations

import asyncio
from typing import Any, Dict, Optional

from .client import NormdClient, Result


class AsyncNormdClient:
    """Same arguments as NormdClient; `await client.norm(...)`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.sync = NormdClient(*args, **kwargs)

    async def norm(self, body: Any, **kwargs: Any) -> Result:
        return await asyncio.to_thread(self.sync.norm, body, **kwargs)

    async def refresh_flags(self, timeout_s: Optional[float] = None) -> bool:
        return await asyncio.to_thread(self.sync.refresh_flags, timeout_s)

    async def ready(self, timeout: Optional[float] = None) -> bool:
        return await asyncio.to_thread(self.sync.ready, timeout)

    def stats(self) -> Dict[str, Any]:
        return self.sync.stats()

    async def close(self) -> None:
        await asyncio.to_thread(self.sync.close)

    async def __aenter__(self) -> "AsyncNormdClient":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
