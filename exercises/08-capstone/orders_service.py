"""Orders: staff create orders; each is charged and confirmed by e-mail; anyone can look an order up.

Run it with two workers:  ORDERS_DATABASE_URL=sqlite+aiosqlite:///orders.db uvicorn orders_service:app --workers 2
(or a PostgreSQL URL, postgresql+asyncpg://user@host/orders: the checks use one on the PostgreSQL stack).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import AsyncIterator
from typing import Annotated

from asynclab.standins.s08_capstone import (
    CardDeclined,
    MailClient,
    Order,
    PaymentGateway,
    StaffTokens,
    settings,
)
from fastapi import Depends, FastAPI, Header, HTTPException, Request
from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

log = logging.getLogger("orders")
tokens = StaffTokens()


class NewOrder(BaseModel):
    email: str
    amount_cents: int
    card: str


app = FastAPI()


@app.on_event("startup")
async def open_resources() -> None:
    engine = create_async_engine(settings.database_url)
    app.state.engine = engine
    app.state.payments = PaymentGateway(settings.payments_key)
    app.state.mail = await MailClient.connect()
    app.state.session = async_sessionmaker(engine, expire_on_commit=False)()


@app.on_event("shutdown")
async def close_resources() -> None:
    await app.state.session.close()
    await app.state.mail.aclose()
    app.state.payments.close()
    await app.state.engine.dispose()


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    yield request.app.state.session


async def staff_member(authorization: Annotated[str, Header()] = "") -> str:
    name = tokens.verify(authorization.removeprefix("Bearer "))
    if not name:
        raise HTTPException(401, "a valid staff token is required", headers={"WWW-Authenticate": "Bearer"})
    return name


Session = Annotated[AsyncSession, Depends(get_session)]
Staff = Annotated[str, Depends(staff_member)]
order_numbers = itertools.count(1)


@app.post("/orders", status_code=201)
async def create_order(new: NewOrder, staff: Staff, session: Session, request: Request) -> dict[str, object]:
    order = Order(number=f"ORD-{next(order_numbers):05d}", email=new.email, amount_cents=new.amount_cents)
    session.add(order)
    await session.flush()
    try:
        order.receipt = request.app.state.payments.charge(order.number, new.amount_cents, new.card)
    except CardDeclined:
        raise HTTPException(402, "the card was declined") from None
    await session.commit()
    asyncio.create_task(request.app.state.mail.send(order.email))
    log.info("order %s created by %s", order.number, staff)
    return order.as_dict()


@app.get("/orders/{order_id}")
async def get_order(order_id: int, session: Session) -> dict[str, object]:
    try:
        result = await session.execute(select(Order).where(Order.id == order_id))
        order = result.scalar_one_or_none()
        if order is None:
            raise HTTPException(404, "order not found")
        return order.as_dict()
    except Exception as exc:
        log.error("could not read order %s", order_id, exc_info=exc)
        raise HTTPException(500, "internal error") from exc
