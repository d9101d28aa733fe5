"""The catalog's test suite: run it with `python -m pytest catalog_tests.py` in this folder."""

from __future__ import annotations

from collections.abc import Iterator

import catalog_service
import httpx
import pytest
from blockbuster import BlockBuster, blockbuster_ctx

pytestmark = pytest.mark.anyio


@pytest.fixture(autouse=True)
# BEGIN SOLUTION
def blockbuster() -> Iterator[BlockBuster]:
    # Fail any test in which the service makes a blocking call on the event loop.
    with blockbuster_ctx(["catalog_service"]) as detector:
        yield detector
# HANDED OUT
# def blockbuster() -> Iterator[None]:
#     # Add the detector here: fail any test in which the service blocks the event loop.
#     yield None
# END SOLUTION


@pytest.fixture
async def client() -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=catalog_service.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://catalog") as client:
        yield client


async def test_product_page_shows_the_price(client: httpx.AsyncClient) -> None:
    response = await client.get("/products/kettle")
    assert response.status_code == 200
    assert response.json() == {"sku": "kettle", "price": "34.90 EUR"}


async def test_description(client: httpx.AsyncClient) -> None:
    response = await client.get("/products/mug/description")
    assert response.status_code == 200
    assert "mug" in response.json()["description"]


async def test_unknown_product_has_no_description(client: httpx.AsyncClient) -> None:
    assert (await client.get("/products/spoon/description")).status_code == 404
