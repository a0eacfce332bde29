"""Client scenarios run with nats-py (PyPI) against a NATS server: Eventyard's gateway, or
nats-server for comparison. Usage: nats_py.py URL SCENARIO [TOKEN]. Prints one JSON object with
what the client saw; the Rust tests assert on it. Every wait has a timeout."""

import asyncio
import json
import sys

import nats
from nats.errors import NoRespondersError

TIMEOUT = 5


async def pubsub(url, token):
    nc = await nats.connect(url, token=token)
    got = []
    done = asyncio.Event()

    async def on_message(msg):
        got.append({"subject": msg.subject, "data": msg.data.decode(), "headers": msg.headers})
        if len(got) == 10:
            done.set()

    await nc.subscribe("greet.*", cb=on_message)
    for i in range(9):
        await nc.publish(f"greet.n{i}", f"hello {i}".encode())
    await nc.publish("greet.h", b"with headers", headers={"X-Trace": "abc"})
    await asyncio.wait_for(done.wait(), TIMEOUT)
    await nc.drain()
    return {"got": got}


async def queue_group(url, token):
    nc = await nats.connect(url, token=token)
    counts = {"a": 0, "b": 0}
    done = asyncio.Event()

    def counter(name):
        async def on_message(_msg):
            counts[name] += 1
            if counts["a"] + counts["b"] == 100:
                done.set()

        return on_message

    await nc.subscribe("jobs", queue="workers", cb=counter("a"))
    await nc.subscribe("jobs", queue="workers", cb=counter("b"))
    await nc.flush()
    for i in range(100):
        await nc.publish("jobs", str(i).encode())
    await asyncio.wait_for(done.wait(), TIMEOUT)
    await asyncio.sleep(0.2)
    await nc.drain()
    return counts


async def request_reply(url, token):
    nc = await nats.connect(url, token=token)

    async def echo(msg):
        await msg.respond(msg.data.upper())

    await nc.subscribe("svc.echo", cb=echo)
    await nc.flush()
    reply = await nc.request("svc.echo", b"ping", timeout=TIMEOUT)
    no_responders = False
    try:
        await nc.request("svc.nobody", b"x", timeout=TIMEOUT)
    except NoRespondersError:
        no_responders = True
    await nc.drain()
    return {"reply": reply.data.decode(), "no_responders": no_responders}


async def connect_only(url, token):
    errors = []

    async def on_error(err):
        errors.append(str(err))

    try:
        nc = await nats.connect(url, token=token, error_cb=on_error, allow_reconnect=False, connect_timeout=TIMEOUT)
        await nc.close()
        return {"connected": True, "errors": errors}
    except Exception as err:  # noqa: BLE001 - the test wants whatever the client raised
        return {"connected": False, "error": f"{type(err).__name__}: {err}", "errors": errors}


async def max_payload(url, token):
    nc = await nats.connect(url, token=token)
    info_max = nc.max_payload
    try:
        await nc.publish("big", b"x" * (info_max + 1))
        raised = None
    except Exception as err:  # noqa: BLE001
        raised = type(err).__name__
    await nc.close()
    return {"max_payload": info_max, "raised": raised}


SCENARIOS = {
    "pubsub": pubsub,
    "queue_group": queue_group,
    "request_reply": request_reply,
    "connect_only": connect_only,
    "max_payload": max_payload,
}


def main():
    url, scenario = sys.argv[1], sys.argv[2]
    token = sys.argv[3] if len(sys.argv) > 3 else None
    result = asyncio.run(asyncio.wait_for(SCENARIOS[scenario](url, token), 30))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
