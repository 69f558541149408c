"""A loopback HTTP server handing out one blob: what an XEP-0363 upload reference
points at in the tests and benchmarks that need a file server of their own (to count
the fetches a reference causes, or to serve a payload of a chosen size)."""

from __future__ import annotations

from aiohttp import web


class BlobServer:
    """Serves ``body`` at every path of ``http://127.0.0.1:{port}/``, counting the GETs
    (:attr:`gets`); :meth:`start` binds a free port, :meth:`stop` releases it."""

    def __init__(self, body: bytes) -> None:
        self.body = body
        self.gets = 0
        self.port = 0
        self._runner: web.AppRunner | None = None

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{name}"

    async def start(self) -> None:
        async def get(_request: web.Request) -> web.Response:
            self.gets += 1
            return web.Response(body=self.body)
        app = web.Application()
        app.router.add_get("/{name}", get)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]  # (host, port) bound by start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


__all__ = ["BlobServer"]
