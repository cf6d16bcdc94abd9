"""The asyncio face: the sync client on worker threads."""
from __future__ import annotations

import asyncio
import gzip
import unittest

from normd_client import AsyncNormdClient, NormdError
from support import FakeNormd, inapp


class Async(unittest.TestCase):
    def setUp(self) -> None:
        self.fake = FakeNormd()
        self.addCleanup(self.fake.close)

    def test_concurrent_calls_and_errors(self) -> None:
        async def main():
            async with AsyncNormdClient(self.fake.socket_path, fallback=inapp, flags_refresh_s=0,
                                        deadline_ms=10_000) as c:
                self.assertTrue(await c.ready(5))
                results = await asyncio.gather(*(c.norm(f'{{"i":{i}}}', key=f"k{i}") for i in range(8)))
                self.fake.norm_handler = lambda h, b: h.problem(422, "schema_violation")
                with self.assertRaises(NormdError):
                    await c.norm("{}")
                return results, c.stats()
        results, stats = asyncio.run(main())
        self.assertEqual([gzip.decompress(r.data) for r in results], [b'{"i":%d}' % i for i in range(8)])
        self.assertEqual((stats["normd_ok"], stats["errors"]), (8, 1))


if __name__ == "__main__":
    unittest.main()
