"""Client for Rasa's REST channel (``POST /webhooks/rest/webhook``), shared by all channels.

Balances across several Rasa instances (round robin, skipping instances that failed recently)
and turns every failure into :class:`RasaUnavailable`, so the caller can send the fail-safe reply.
"""
from __future__ import annotations

import asyncio
import hashlib
import itertools
import logging
import time
from typing import Any, Dict, List, Optional, Sequence

import aiohttp
import httpx

logger = logging.getLogger(__name__)


class RasaUnavailable(Exception):
    """No Rasa instance answered in time, or the answer was not a list of messages."""


class RasaClient:
    """Send user messages to Rasa and return the bot's messages.

    With several instances, each conversation is sent to the same healthy instance (sticky by
    sender id), and to the next one when that instance fails.

    Args:
        urls: base URLs of the Rasa servers, e.g. ``["http://127.0.0.1:5005"]``.
        timeout_s: total time allowed for one message, in seconds (all retries included).
        cooldown_s: how long an instance that failed is skipped, in seconds.
        transport: optional httpx transport (tests: ``httpx.MockTransport``). Without one the
            requests go through aiohttp (already installed with Rasa): ~1 ms less per message
            than httpx's pure-Python HTTP/1.1 client on loopback (bench/results/perf.md).
    """

    def __init__(self, urls: Sequence[str], timeout_s: float = 8.0, cooldown_s: float = 5.0,
                 transport: Optional[httpx.AsyncBaseTransport] = None) -> None:
        if not urls:
            raise ValueError("at least one Rasa URL is required")
        self.urls = [u.rstrip("/") for u in urls]
        self.timeout_s = timeout_s
        self.cooldown_s = cooldown_s
        self._down_until: Dict[str, float] = {}
        self._cycle = itertools.cycle(range(len(self.urls)))
        self._client: Optional[httpx.AsyncClient] = None
        self._session: Optional[aiohttp.ClientSession] = None
        self._session_loop: Optional[asyncio.AbstractEventLoop] = None
        if transport is not None:
            self._client = httpx.AsyncClient(timeout=timeout_s, transport=transport)

    def _aiohttp(self) -> aiohttp.ClientSession:
        # created on first use, inside the running event loop (aiohttp needs one); a new one
        # if that loop has changed (e.g. tests that call asyncio.run several times)
        loop = asyncio.get_running_loop()
        if self._session is None or self._session.closed or self._session_loop is not loop:
            self._session_loop = loop
            # keep idle connections 4 s, less than Sanic's default keep-alive (5 s): a request
            # written to a connection Rasa is closing would fail
            connector = aiohttp.TCPConnector(limit=200, keepalive_timeout=4)
            self._session = aiohttp.ClientSession(connector=connector, raise_for_status=True)
        return self._session

    async def _request(self, method: str, url: str, timeout_s: float,
                       body: Optional[Dict[str, Any]] = None, decode: bool = True) -> Any:
        """One HTTP request; the decoded JSON body of a 2xx answer (None if not ``decode``).

        Raises:
            asyncio.TimeoutError / httpx.TimeoutException: no answer within ``timeout_s``.
            aiohttp.ClientError / httpx.HTTPError: connection failed, or a non-2xx status.
            ValueError: the body is not JSON.
        """
        if self._client is not None:
            response = await self._client.request(method, url, json=body, timeout=timeout_s)
            response.raise_for_status()
            return response.json() if decode else None
        timeout = aiohttp.ClientTimeout(total=timeout_s)
        async with self._aiohttp().request(method, url, json=body, timeout=timeout) as response:
            if not decode:
                await response.read()
                return None
            return await response.json(content_type=None)

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
        if self._session is not None:
            await self._session.close()

    def _order(self, sender: Optional[str] = None) -> List[str]:
        # Each conversation goes to "its" instance (a stable hash of the sender id), so its
        # messages are handled in the order they arrive even in a burst (the lock store only
        # serialises them, tests/test_scale.py); conversations spread evenly over the
        # instances, and a failed instance is skipped for ``cooldown_s``.
        if sender is not None:
            start = int(hashlib.sha256(sender.encode("utf-8")).hexdigest()[:8], 16) % len(self.urls)
        else:
            start = next(self._cycle)
        ordered = self.urls[start:] + self.urls[:start]
        now = time.monotonic()
        healthy = [u for u in ordered if self._down_until.get(u, 0) <= now]
        return healthy + [u for u in ordered if u not in healthy]

    async def send(self, sender: str, message: str,
                   metadata: Optional[Dict[str, Any]] = None) -> List[Dict[str, Any]]:
        """Send one user message; return Rasa's list of bot messages.

        Args:
            sender: the pseudonymous conversation id (never empty: Rasa would use "default").
            message: the user's text or a button payload.
            metadata: channel metadata (``channel``, ``language_hint``, ``language_choice``…).

        Returns:
            A list of dicts with ``text`` and optional ``buttons`` (``[{title, payload}]``),
            possibly empty (Rasa returns ``[]`` when an action fails).

        Raises:
            RasaUnavailable: when no instance answered within ``timeout_s``.
            ValueError: if ``sender`` is empty.
        """
        if not sender:
            raise ValueError("sender must not be empty")
        body = {"sender": sender, "message": message, "metadata": metadata or {}}
        deadline = time.monotonic() + self.timeout_s
        last_error: Optional[Exception] = None
        for url in self._order(sender):
            remaining = deadline - time.monotonic()
            if remaining <= 0.05:
                break
            try:
                # httpx applies its timeout to each phase (pool, connect, write, each read), so
                # a busy Rasa could hold a request for several times ``timeout_s``: wait_for
                # makes it one deadline for the whole request, whichever client is used.
                data = await asyncio.wait_for(self._request(
                    "POST", f"{url}/webhooks/rest/webhook", remaining, body), timeout=remaining)
                if not isinstance(data, list):
                    raise RasaUnavailable("Rasa answered with something other than a list")
                self._down_until.pop(url, None)
                return [m for m in data if isinstance(m, dict)]
            except (httpx.TimeoutException, asyncio.TimeoutError) as exc:
                # A slow instance may still be processing this message; sending it to another
                # instance would process it twice, so give up instead of retrying elsewhere.
                self._down_until[url] = time.monotonic() + self.cooldown_s
                raise RasaUnavailable(f"timeout after {self.timeout_s}s") from exc
            except (httpx.HTTPError, aiohttp.ClientError, ValueError, RasaUnavailable) as exc:
                logger.warning("Rasa instance %s failed: %s", url, type(exc).__name__)
                self._down_until[url] = time.monotonic() + self.cooldown_s
                last_error = exc
        raise RasaUnavailable(str(last_error) if last_error else "no Rasa instance available")

    async def healthy(self) -> Dict[str, bool]:
        """Ask each instance's ``GET /`` (Rasa's hello endpoint); return ``{url: ok}``."""
        result = {}
        for url in self.urls:
            try:
                await asyncio.wait_for(self._request("GET", f"{url}/", 2.0, decode=False),
                                       timeout=2.0)
                result[url] = True
            except (httpx.HTTPError, aiohttp.ClientError, asyncio.TimeoutError, ValueError):
                result[url] = False
        return result
