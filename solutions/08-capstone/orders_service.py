"""Orders: staff create orders; each is charged and confirmed by e-mail; anyone can look an order up.

Run it with two workers:  ORDERS_DATABASE_URL=sqlite+aiosqlite:///orders.db uvicorn orders_service:app --workers 2
(or a PostgreSQL URL, postgresql+asyncpg://user@host/orders: the checks use one on the PostgreSQL stack).
"""

from __future__ import annotations

# BEGIN SOLUTION
import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Annotated

import anyio
from asynclab.standins.s08_capstone import (
    CardDeclined,
    MailClient,
    Order,
    PaymentGateway,
    StaffTokens,
    settings,
)
from fastapi import BackgroundTasks, Depends, FastAPI, Header, HTTPException, Request
from pydantic import BaseModel
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
# HANDED OUT
# import asyncio
# import itertools
# import logging
# from collections.abc import AsyncIterator
# from typing import Annotated
#
# from asynclab.standins.s08_capstone import (
#     CardDeclined,
#     MailClient,
#     Order,
#     PaymentGateway,
#     StaffTokens,
#     settings,
# )
# from fastapi import Depends, FastAPI, Header, HTTPException, Request
# from pydantic import BaseModel
# from sqlalchemy import select
# from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
# END SOLUTION

log = logging.getLogger("orders")
tokens = StaffTokens()


class NewOrder(BaseModel):
    email: str
    amount_cents: int
    card: str


# BEGIN SOLUTION
# Opened in the lifespan, one of each per worker, and closed after it. Kept on app.state, set here;
# the lifespan's yielded state (request.state) would do as well. Never opened at import time.
@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    async with AsyncExitStack() as stack:
        engine = create_async_engine(settings.database_url)
        stack.push_async_callback(engine.dispose)
        app.state.sessions = async_sessionmaker(engine, expire_on_commit=False)
        app.state.payments = PaymentGateway(settings.payments_key)
        stack.callback(app.state.payments.close)
        app.state.mail = await MailClient.connect()
        stack.push_async_callback(app.state.mail.aclose)
        yield


app = FastAPI(lifespan=lifespan)


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    async with request.app.state.sessions() as session:
        yield session
# HANDED OUT
# app = FastAPI()
#
#
# @app.on_event("startup")
# async def open_resources() -> None:
#     engine = create_async_engine(settings.database_url)
#     app.state.engine = engine
#     app.state.payments = PaymentGateway(settings.payments_key)
#     app.state.mail = await MailClient.connect()
#     app.state.session = async_sessionmaker(engine, expire_on_commit=False)()
#
#
# @app.on_event("shutdown")
# async def close_resources() -> None:
#     await app.state.session.close()
#     await app.state.mail.aclose()
#     app.state.payments.close()
#     await app.state.engine.dispose()
#
#
# async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
#     yield request.app.state.session
# END SOLUTION


async def staff_member(authorization: Annotated[str, Header()] = "") -> str:
    # BEGIN SOLUTION
    name = await tokens.verify(authorization.removeprefix("Bearer "))
    if name is None:
    # HANDED OUT
    # name = tokens.verify(authorization.removeprefix("Bearer "))
    # if not name:
    # END SOLUTION
        raise HTTPException(401, "a valid staff token is required", headers={"WWW-Authenticate": "Bearer"})
    return name


Session = Annotated[AsyncSession, Depends(get_session)]
Staff = Annotated[str, Depends(staff_member)]
# BEGIN SOLUTION


async def send_confirmation(mail: MailClient, number: str, to: str) -> None:
    try:
        with anyio.fail_after(5):
            await mail.send(to)
    except Exception:
        log.exception("confirmation of order %s to %s was not sent", number, to)
# HANDED OUT
# order_numbers = itertools.count(1)
# END SOLUTION


@app.post("/orders", status_code=201)
# BEGIN SOLUTION
async def create_order(
    new: NewOrder, staff: Staff, session: Session, request: Request, background: BackgroundTasks
) -> dict[str, object]:
# HANDED OUT
# async def create_order(new: NewOrder, staff: Staff, session: Session, request: Request) -> dict[str, object]:
# END SOLUTION
    # BEGIN SOLUTION
    order = Order(email=new.email, amount_cents=new.amount_cents)
    session.add(order)
    await session.flush()  # the database hands out the id: unique across every worker
    order.number = f"ORD-{order.id:05d}"
    try:
        charge = request.app.state.payments.charge
        order.receipt = await anyio.to_thread.run_sync(charge, order.number, new.amount_cents, new.card)
    except CardDeclined:
        raise HTTPException(402, "the card was declined") from None
    await session.commit()
    background.add_task(send_confirmation, request.app.state.mail, order.number, order.email)
    # HANDED OUT
    # order = Order(number=f"ORD-{next(order_numbers):05d}", email=new.email, amount_cents=new.amount_cents)
    # session.add(order)
    # await session.flush()
    # try:
    #     order.receipt = request.app.state.payments.charge(order.number, new.amount_cents, new.card)
    # except CardDeclined:
    #     raise HTTPException(402, "the card was declined") from None
    # await session.commit()
    # asyncio.create_task(request.app.state.mail.send(order.email))
    # END SOLUTION
    log.info("order %s created by %s", order.number, staff)
    return order.as_dict()


@app.get("/orders/{order_id}")
async def get_order(order_id: int, session: Session) -> dict[str, object]:
    # BEGIN SOLUTION
    try:
        order = await session.get(Order, order_id)
    except SQLAlchemyError as exc:
        log.error("could not read order %s", order_id, exc_info=exc)
        raise HTTPException(503, "orders are unavailable, try again shortly") from exc
    if order is None:
        raise HTTPException(404, "order not found")
    return order.as_dict()
    # HANDED OUT
    # try:
    #     result = await session.execute(select(Order).where(Order.id == order_id))
    #     order = result.scalar_one_or_none()
    #     if order is None:
    #         raise HTTPException(404, "order not found")
    #     return order.as_dict()
    # except Exception as exc:
    #     log.error("could not read order %s", order_id, exc_info=exc)
    #     raise HTTPException(500, "internal error") from exc
    # END SOLUTION
