"""The status snapshot as OpenMetrics, for Prometheus or any scraper.

    text = exposition(snapshot(settings))       # `objlib metrics`
    server = serve(settings, port=9464)         # `objlib metrics --serve 9464`

Built with ``prometheus_client`` (a custom collector over ``status.snapshot``; its own
OpenMetrics writer and HTTP server), not by hand: escaping, the exposition format and
content negotiation are the library's. Every figure is what ``objlib status`` shows, read at
scrape time, so every metric is a gauge: the snapshot's windows (requests and 429s of the
last minute, errors of the last hour, throughput over 1/5/15 minutes) are already rates or
windowed counts, and the files per state are levels. The breaker is an OpenMetrics
``stateset``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily, Metric, StateSetMetricFamily
from prometheus_client.openmetrics.exposition import generate_latest
from prometheus_client.registry import CollectorRegistry

from objlib import __version__
from objlib import status as st
from objlib.settings import Settings

BREAKER_STATES = ("closed", "open", "half-open")


def families(snap: st.Snapshot) -> Iterator[Metric]:
    """One snapshot as metric families (names without the ``_info`` suffix the writer adds)."""
    info = InfoMetricFamily("objlib", "The catalogue's home and store, and objlib's version.")
    info.add_metric([], {"home": snap.home, "store": snap.store or "", "version": __version__})
    yield info

    files = GaugeMetricFamily("objlib_files", "Files in the catalogue, per lifecycle state.",
                              labels=["state"])
    for state, count in snap.files.items():
        files.add_metric([state], count)
    yield files
    yield GaugeMetricFamily("objlib_files_remaining", "Eligible files neither indexed nor "
                            "failed: the work still to do.", value=snap.remaining)
    yield GaugeMetricFamily("objlib_indexed_ratio", "Indexed share of the eligible files "
                            "(0 while the store is gone).", value=snap.percent / 100.0)

    oldest = GaugeMetricFamily("objlib_oldest_in_flight_age_seconds", "How long the oldest "
                               "row in each in-flight state has been there.", labels=["state"])
    for state, age in snap.oldest_in_flight_age_s.items():
        if age is not None:
            oldest.add_metric([state], age)
    yield oldest

    queue = GaugeMetricFamily("objlib_queue_tasks", "Tasks in huey's queue (waiting) and its "
                              "schedule (polls, deferred steps, retries).", labels=["where"])
    queue.add_metric(["waiting"], snap.waiting)
    queue.add_metric(["scheduled"], snap.scheduled)
    yield queue

    rate = GaugeMetricFamily("objlib_indexed_per_minute", "Files indexed per minute over the "
                             "last 1, 5 and 15 minutes.", labels=["window"])
    for key, per_minute in snap.throughput_per_min.items():
        rate.add_metric([key.rsplit("_", 1)[1]], per_minute)
    yield rate
    if snap.eta_s is not None:
        yield GaugeMetricFamily("objlib_eta_seconds", "Time left at the rate of the last 5 "
                                "minutes.", value=snap.eta_s)

    errors = GaugeMetricFamily("objlib_errors_last_hour", "Errors met in the last hour (retried "
                               "or final), per error class.", labels=["error_class"])
    for error_class, count in snap.errors_by_class.items():
        errors.add_metric([error_class], count)
    yield errors

    yield from _throttle(snap.throttle)
    yield GaugeMetricFamily("objlib_store_lost", "1 while the store is gone (objlib "
                            "reconcile --fix makes a new one).",
                            value=int(snap.store_lost_at is not None))
    if snap.last_activity_at is not None:
        yield GaugeMetricFamily("objlib_last_activity_timestamp_seconds", "The last worker "
                                "transition, error or API request.", value=snap.last_activity_at)
    reconciled = snap.last_reconcile if isinstance(snap.last_reconcile, dict) else {}
    if isinstance(reconciled.get("at"), (int, float)):
        yield GaugeMetricFamily("objlib_last_reconcile_timestamp_seconds", "When objlib "
                                "reconcile last ran.", value=reconciled["at"])
    if isinstance(reconciled.get("drift"), int):
        yield GaugeMetricFamily("objlib_last_reconcile_drift", "Drift the last reconcile "
                                "found.", value=reconciled["drift"])


def _throttle(t) -> Iterator[Metric]:
    breaker = StateSetMetricFamily("objlib_breaker", "The circuit breaker shared by every "
                                   "worker (open: requests are deferred).")
    breaker.add_metric([], {state: t.breaker == state for state in BREAKER_STATES})
    yield breaker
    yield GaugeMetricFamily("objlib_breaker_open_remaining_seconds", "Time until an open "
                            "breaker lets a request through.", value=t.breaker_open_for_s)
    yield GaugeMetricFamily("objlib_breaker_trips", "Consecutive trips of the breaker (its "
                            "cooldown doubles with each).", value=t.breaker_trips)
    yield GaugeMetricFamily("objlib_requests_last_minute", "API requests sent in the last 60 "
                            "s, by every worker.", value=t.requests_last_60s)
    yield GaugeMetricFamily("objlib_rate_limited_requests_last_minute", "Requests answered "
                            "429 in the last 60 s.", value=t.rate_limited_last_60s)
    yield GaugeMetricFamily("objlib_throttled_requests_last_minute", "Requests answered 429, "
                            "502, 503, 504 or not at all in the last 60 s.",
                            value=t.throttled_last_60s)
    yield GaugeMetricFamily("objlib_rate_limit_per_minute", "The configured request limit "
                            "(0: unlimited).", value=t.limit_per_minute)
    if t.adaptive_per_minute is not None:
        yield GaugeMetricFamily("objlib_adaptive_rate_per_minute", "The pace adapted to 429s, "
                                "while one is in force.", value=t.adaptive_per_minute)


class SnapshotCollector:
    """A prometheus_client collector that reads a fresh snapshot on every collection."""

    def __init__(self, read: Callable[[], st.Snapshot]):
        self.read = read

    def collect(self) -> Iterator[Metric]:
        return families(self.read())


def registry(read: Callable[[], st.Snapshot]) -> CollectorRegistry:
    reg = CollectorRegistry(auto_describe=False)
    reg.register(SnapshotCollector(read))
    return reg


def exposition(snap: st.Snapshot) -> str:
    """One snapshot in the OpenMetrics text format (ending with ``# EOF``)."""
    return generate_latest(registry(lambda: snap)).decode("utf-8")


def serve(settings: Settings, port: int, host: str = "127.0.0.1"):
    """Serve ``/metrics`` (OpenMetrics when the scraper asks for it, Prometheus text
    otherwise) from a daemon thread, a fresh snapshot per scrape; returns the server
    (``server_port`` is the port taken when ``port`` is 0). The catalogue is read once
    first, so a home without one is refused at start rather than at every scrape."""
    from prometheus_client.exposition import start_http_server

    st.snapshot(settings)
    server, _thread = start_http_server(port, addr=host,
                                        registry=registry(lambda: st.snapshot(settings)))
    return server


def serve_until_stopped(settings: Settings, port: int, host: str,
                        announce: Callable[[str], None]) -> None:
    """``serve``, tell ``announce`` the URL, and block until SIGINT or SIGTERM (a service
    manager's stop is a clean exit too)."""
    import signal
    import threading

    server = serve(settings, port, host)
    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        announce(f"http://{host}:{server.server_port}/metrics")
        while not stop.wait(0.5):  # short waits keep Ctrl+C prompt on every platform
            pass
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        server.shutdown()
        server.server_close()
