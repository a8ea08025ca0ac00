"""A service app in-process: its lifespan (broker, pool, consumers) and an HTTP client bound to it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import httpx
from fastapi import FastAPI


@asynccontextmanager
async def running_app(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """Run the app's lifespan (broker, pool, consumers) and give an HTTP client bound to it."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://service") as client:
            yield client


@asynccontextmanager
async def running_apps(*apps: FastAPI) -> AsyncIterator[list[httpx.AsyncClient]]:
    """Several apps started together (each start waits for its consumer groups: seconds on Tansu); stopped in reverse.

    If one fails to start, those that started are stopped and the failure is raised.
    """
    contexts = [running_app(app) for app in apps]
    results = await asyncio.gather(*(c.__aenter__() for c in contexts), return_exceptions=True)
    async with AsyncExitStack() as stack:
        for context, result in zip(contexts, results, strict=True):
            if not isinstance(result, BaseException):
                stack.push_async_exit(context)
        for result in results:
            if isinstance(result, BaseException):
                raise result
        yield [result for result in results if isinstance(result, httpx.AsyncClient)]
