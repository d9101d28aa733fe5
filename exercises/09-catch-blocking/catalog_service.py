"""Catalog: a product's page (name and price) and its description, read from the catalog's text files."""

from __future__ import annotations

import anyio
from fastapi import FastAPI, HTTPException

from asynclab.standins.s09_catch_blocking import DESCRIPTIONS, display_price

app = FastAPI()


@app.get("/products/{sku}")
async def product(sku: str) -> dict[str, str]:
    price = display_price(sku)
    return {"sku": sku, "price": price}


@app.get("/products/{sku}/description")
async def description(sku: str) -> dict[str, str]:
    path = DESCRIPTIONS / f"{sku}.txt"
    if not path.is_file():
        raise HTTPException(404, "no such product")
    return {"sku": sku, "description": path.read_text(encoding="utf-8")}
