"""The Gemini client a command uses (``enqueue``'s store, ``reconcile``'s listing and
deletes): every request passes the shared rate limiter and feeds the circuit breaker, like a
worker's (``pipeline.build_context``). A command may wait, so where a task would re-schedule
(``Deferred``) it sleeps until its slot.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable

from objlib.recovery import process_owner
from objlib.settings import Settings
from objlib.throttle import Deferred, Throttle


def command_client(settings: Settings, *, holder: str = "command",
                   calls: Counter | None = None) -> tuple[object, list[Callable[[], None]]]:
    """A GeminiClient through the shared throttle, and what closes it. ``calls["requests"]``
    counts the requests sent (when ``calls`` is given)."""
    from objlib.gemini.client import GeminiClient  # google.genai is slow to import

    throttle = Throttle.from_settings(settings)
    who = f"{holder}:{process_owner()}"

    def on_request(call: str, cost: int) -> None:
        if calls is not None:
            calls["requests"] += 1
        while True:
            try:
                return throttle.acquire(who, cost)
            except Deferred as d:
                time.sleep(d.delay_s)

    client = GeminiClient.from_env(settings, on_request=on_request,
                                   on_response=lambda call, status: throttle.record(status))
    return client, [client.close, throttle.close]
