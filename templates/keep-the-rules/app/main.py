"""The sample service: a greeting by country, a health check, the loop's lag at /metrics."""

from __future__ import annotations

from fastapi import FastAPI
from prometheus_client import Histogram, make_asgi_app

from app import geo
from loop_watchdog import LAG_BUCKETS, Watchdog

loop_lag = Histogram(
    "event_loop_lag_seconds",
    "How late the event loop ran the watchdog's heartbeat",
    buckets=LAG_BUCKETS,
)
watchdog = Watchdog(threshold=0.2, lag=loop_lag)
app = FastAPI(lifespan=watchdog.lifespan)
app.add_middleware(watchdog.middleware)
# Prometheus scrapes /metrics/ (or /metrics, which redirects there): the loop's lag.
app.mount("/metrics", make_asgi_app())

GREETINGS = {"NO": "Hei", "PT": "Olá"}


@app.get("/greeting/{ip}")
async def greeting(ip: str) -> dict[str, str]:
    country = geo.lookup(ip)
    return {"country": country, "greeting": GREETINGS.get(country, "Hello")}


@app.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}
