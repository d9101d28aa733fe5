"""The geolocation team's client: a sync HTTP client underneath, so every lookup blocks its thread."""

from __future__ import annotations

import time

COUNTRIES = {"192.0.2.1": "NO", "198.51.100.7": "PT"}


def lookup(ip: str) -> str:
    # The HTTP round trip. Ruff cannot see it: this function is not async.
    time.sleep(0.01)
    return COUNTRIES.get(ip, "unknown")
