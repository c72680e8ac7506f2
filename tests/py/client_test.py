#!/usr/bin/env python3
"""Drive a corecast echo server with the asyncio `websockets` client.

Usage: client_test.py ws://HOST:PORT/

Checks echo of text and binary, a fragmented send (reassembled into one echo),
ping/pong with a payload, and a close with a code (echoed by the server).
Prints one line per check and a final "N passed, N failed" line; exits non-zero
on any failure.
"""

import asyncio
import sys

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

CHECKS = []


def check(name):
    def wrap(fn):
        CHECKS.append((name, fn))
        return fn

    return wrap


@check("echo text")
async def echo_text(url):
    async with connect(url) as ws:
        for text in ["hello", "", "ünïcødé ✓ 🚀"]:
            await ws.send(text)
            got = await asyncio.wait_for(ws.recv(), 10)
            assert got == text, f"sent {text!r}, got {got!r}"


@check("echo binary")
async def echo_binary(url):
    async with connect(url, max_size=2**24) as ws:
        for data in [b"\x00\x01\xff", bytes(range(256)) * 1000]:
            await ws.send(data)
            got = await asyncio.wait_for(ws.recv(), 10)
            assert isinstance(got, bytes), f"binary echoed as {type(got).__name__}"
            assert got == data, f"binary of {len(data)} bytes differs"


@check("fragmented send is echoed as one message")
async def fragmented(url):
    async with connect(url) as ws:
        parts = ["frag", "ment", "ed ✓"]
        await ws.send(iter(parts))  # an iterable is sent as one fragmented message
        got = await asyncio.wait_for(ws.recv(), 10)
        assert got == "".join(parts), f"got {got!r}"
        await ws.send([b"\x01", b"\x02", b"\x03"])
        got = await asyncio.wait_for(ws.recv(), 10)
        assert got == b"\x01\x02\x03", f"got {got!r}"


@check("ping is answered with a pong")
async def ping(url):
    async with connect(url) as ws:
        waiter = await ws.ping(b"py-ping")
        latency = await asyncio.wait_for(waiter, 10)
        assert latency >= 0


@check("close with a code is echoed")
async def close_with_code(url):
    ws = await connect(url)
    await ws.send("before close")
    assert await asyncio.wait_for(ws.recv(), 10) == "before close"
    await ws.close(code=4002, reason="python done")
    await asyncio.wait_for(ws.wait_closed(), 10)
    assert ws.close_code == 4002, f"close_code {ws.close_code}"
    rcvd = ws.protocol.close_rcvd
    assert rcvd is not None and rcvd.code == 4002, f"server's close frame: {rcvd}"
    try:
        await ws.recv()
        raise AssertionError("recv after close should fail")
    except ConnectionClosed as e:
        assert e.rcvd is not None and e.rcvd.code == 4002, repr(e)


async def main(url):
    passed = failed = 0
    for name, fn in CHECKS:
        try:
            await asyncio.wait_for(fn(url), 30)
            print(f"ok   {name}")
            passed += 1
        except Exception as e:  # noqa: BLE001 - report every failure
            print(f"FAIL {name}: {type(e).__name__}: {e}")
            failed += 1
    print(f"python client: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    sys.exit(asyncio.run(main(sys.argv[1])))
