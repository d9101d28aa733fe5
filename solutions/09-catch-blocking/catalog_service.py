"""Catalog: a product's page (name and price) and its description, read from the catalog's text files."""

from __future__ import annotations

import anyio
from fastapi import FastAPI, HTTPException

from asynclab.standins.s09_catch_blocking import DESCRIPTIONS, display_price

app = FastAPI()


@app.get("/products/{sku}")
async def product(sku: str) -> dict[str, str]:
    # BEGIN SOLUTION
    price = await anyio.to_thread.run_sync(display_price, sku)  # the pricing SDK blocks: give it a thread
    # HANDED OUT
    # price = display_price(sku)
    # END SOLUTION
    return {"sku": sku, "price": price}


@app.get("/products/{sku}/description")
async def description(sku: str) -> dict[str, str]:
    # BEGIN SOLUTION
    path = anyio.Path(DESCRIPTIONS / f"{sku}.txt")
    if not await path.is_file():
        raise HTTPException(404, "no such product")
    return {"sku": sku, "description": await path.read_text(encoding="utf-8")}
    # HANDED OUT
    # path = DESCRIPTIONS / f"{sku}.txt"
    # if not path.is_file():
    #     raise HTTPException(404, "no such product")
    # return {"sku": sku, "description": path.read_text(encoding="utf-8")}
    # END SOLUTION
