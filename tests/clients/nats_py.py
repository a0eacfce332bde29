"""Client scenarios run with nats-py (PyPI) against a NATS server: Eventyard's gateway, or
nats-server for comparison. Usage: nats_py.py URL SCENARIO [TOKEN or a second URL]. Prints one JSON object with
what the client saw; the Rust tests assert on it. Every wait has a timeout."""

import asyncio
import base64
import json
import ssl
import sys
import urllib.request
from datetime import datetime

import msgpack
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


async def system_events(admin_url, extra):
    """As the system account: watch $SYS.> while a user connects, publishes and leaves, a client
    fails to log in and the router's config is edited and reloaded; then ask PING and the server's
    STATSZ. `extra` is JSON: {"user": URL, "wrong": URL with a wrong password, "reload": the
    router's reload URL, "admin_token": the token it takes, "config": its config file}."""
    extra = json.loads(extra)
    sys_nc = await nats.connect(admin_url)
    seen = []

    async def on_event(msg):
        seen.append({"subject": msg.subject, "data": json.loads(msg.data)})

    await sys_nc.subscribe("$SYS.>", cb=on_event)
    await sys_nc.flush()
    user_nc = await nats.connect(extra["user"], name="seed-001-user")
    await user_nc.publish("foo", b"bar")
    await user_nc.flush()
    await user_nc.close()
    try:
        await nats.connect(extra["wrong"], allow_reconnect=False, connect_timeout=TIMEOUT)
    except Exception:  # noqa: BLE001 - refused, as it should be
        pass
    with open(extra["config"], "a", encoding="utf-8") as config:
        config.write("\n# edited\n")
    reload = urllib.request.Request(
        extra["reload"], method="POST", headers={"Authorization": f"Bearer {extra['admin_token']}"}
    )
    await asyncio.to_thread(lambda: urllib.request.urlopen(reload, timeout=TIMEOUT).read())
    ping = json.loads((await sys_nc.request("$SYS.REQ.SERVER.PING", b"", timeout=TIMEOUT)).data)
    server_id = ping["server"]["id"]
    statsz = await sys_nc.request(f"$SYS.REQ.SERVER.{server_id}.STATSZ", b"", timeout=TIMEOUT)
    await asyncio.sleep(0.5)
    await sys_nc.close()
    return {"seen": seen, "ping": ping, "statsz": json.loads(statsz.data)}


async def permissions(url, _token):
    """A user denied `secret.>` publishes there and subscribes to $SYS.>: both are refused."""
    errors = []

    async def on_error(err):
        errors.append(str(err))

    nc = await nats.connect(url, error_cb=on_error)
    await nc.publish("secret.plans", b"x")
    await nc.subscribe("$SYS.>")
    await nc.flush()
    await asyncio.sleep(0.3)
    await nc.close()
    return {"errors": errors}


async def isolation(url_a, url_b):
    """Clients of two accounts subscribe to `>`; each sees only its own account's messages."""
    a = await nats.connect(url_a)
    b = await nats.connect(url_b)
    got = {"a": [], "b": []}

    def collect(name):
        async def on_message(msg):
            got[name].append(msg.data.decode())

        return on_message

    await a.subscribe(">", cb=collect("a"))
    await b.subscribe(">", cb=collect("b"))
    await a.flush()
    await b.flush()
    await a.publish("shared.subject", b"from a")
    await b.publish("shared.subject", b"from b")
    await a.flush()
    await b.flush()
    await asyncio.sleep(0.3)
    await a.close()
    await b.close()
    return got


def tls_context(paths):
    """A client TLS context trusting `paths["ca"]` and presenting `paths["cert"]`/`paths["key"]`."""
    context = ssl.create_default_context(cafile=paths["ca"])
    context.load_cert_chain(paths["cert"], paths["key"])
    return context


async def tls_connect(url, paths):
    """Connects over TLS trusting `ca` and presenting `cert`/`key`, publishes and reads it back."""
    try:
        context = tls_context(json.loads(paths))
        nc = await nats.connect(url, tls=context, allow_reconnect=False, connect_timeout=TIMEOUT)
    except Exception as err:  # noqa: BLE001
        return {"connected": False, "error": f"{type(err).__name__}: {err}"}
    sub = await nc.subscribe("tls.check")
    await nc.publish("tls.check", b"over tls")
    msg = await sub.next_msg(timeout=TIMEOUT)
    await nc.close()
    return {"connected": True, "data": msg.data.decode()}


async def publish_events(url, extra):
    """Publishes `extra["events"]` ({subject, headers, data} with data sent as JSON, or {subject,
    raw} with raw sent as it is) and flushes; over TLS when `extra` names `ca`, `cert` and `key`,
    with `extra["token"]`. With `extra["expect_error"]`, waits for the server's -ERR (nats-py
    handles it after the flush, then closes) and lists it in `errors`."""
    extra = json.loads(extra)
    messages = []
    for event in extra["events"]:
        payload = event["raw"] if "raw" in event else json.dumps(event["data"])
        messages.append((event["subject"], payload.encode(), event.get("headers")))
    return await publish(url, extra, messages)


async def publish_bahamut(url, extra):
    """Publishes what Aporeto's services publish with bahamut: for each of `extra["publications"]`
    ({topic, identity, operation, entity, timestamp (RFC 3339), encoding "msgpack", "json" or
    "go-json"}), an elemental event in a bahamut publication on subject `topic`. "msgpack": both
    MessagePack (bahamut's NATS pub/sub), the timestamp as MessagePack's timestamp extension;
    "json": older bahamut's JSON envelope with the event as JSON; "go-json": the publication
    marshalled to JSON as Go does, the MessagePack event as base64. {topic, raw} is sent as it is.
    TLS as publish_events."""
    extra = json.loads(extra)
    messages = []
    for p in extra["publications"]:
        if "raw" in p:
            messages.append((p["topic"], p["raw"].encode(), None))
            continue
        when = datetime.fromisoformat(p["timestamp"].replace("Z", "+00:00"))
        if p["encoding"] == "json":
            event = {"identity": p["identity"], "type": p["operation"], "timestamp": p["timestamp"],
                     "encoding": "application/json", "entity": p["entity"]}
            payload = json.dumps({"topic": p["topic"], "encoding": "application/json", "data": event}).encode()
        else:
            event = msgpack.packb({"identity": p["identity"], "type": p["operation"], "timestamp": when,
                                   "encoding": "application/msgpack", "entity": msgpack.packb(p["entity"])},
                                  datetime=True)
            publication = {"topic": p["topic"], "encoding": "application/msgpack", "data": event}
            if p["encoding"] == "go-json":
                publication["data"] = base64.b64encode(event).decode()
                payload = json.dumps(publication).encode()
            else:
                payload = msgpack.packb(publication)
        messages.append((p["topic"], payload, None))
    return await publish(url, extra, messages)


async def publish(url, extra, messages):
    """Publishes `messages` ((subject, bytes, headers)) and flushes; see publish_events."""
    tls = tls_context(extra) if "ca" in extra else None
    try:
        nc = await nats.connect(
            url, token=extra.get("token"), tls=tls, allow_reconnect=False, connect_timeout=TIMEOUT
        )
    except Exception as err:  # noqa: BLE001 - the test wants whatever the client raised
        return {"connected": False, "error": f"{type(err).__name__}: {err}"}
    for subject, payload, headers in messages:
        await nc.publish(subject, payload, headers=headers)
    await nc.flush(timeout=TIMEOUT)
    result = {"connected": True, "published": len(messages)}
    if extra.get("expect_error"):
        for _ in range(100):
            if nc.is_closed:
                break
            await asyncio.sleep(0.02)
        result["errors"] = [str(nc.last_error)] if nc.last_error else []
    await nc.close()
    return result


async def probe(url, extra):
    """What an attacker sees: connects as `extra["as"]` ({user, pass} or {token}; {} for none),
    subscribes to each pattern of `extra["subscribe"]` ("subject" or "subject queue"), lets each of
    `extra["publishers"]` ({as, messages: [{subject, data, reply?}]}) connect and publish, publishes
    `extra["publish"]` itself, and returns every message it got (with the pattern it came through)
    and every error the server sent it."""
    extra = json.loads(extra)
    errors, got = [], []

    async def on_error(err):
        errors.append(str(err))

    async def connect(creds, **more):
        return await nats.connect(
            url, user=creds.get("user"), password=creds.get("pass"), token=creds.get("token"),
            allow_reconnect=False, connect_timeout=TIMEOUT, **more,
        )

    try:
        nc = await connect(extra.get("as", {}), error_cb=on_error)
    except Exception as err:  # noqa: BLE001 - the test wants whatever the client raised
        return {"connected": False, "error": f"{type(err).__name__}: {err}", "errors": errors}

    def collect(pattern):
        async def on_message(msg):
            got.append({"via": pattern, "subject": msg.subject, "data": msg.data.decode()})

        return on_message

    for entry in extra.get("subscribe", []):
        subject, _, queue = entry.partition(" ")
        await nc.subscribe(subject, queue=queue, cb=collect(entry))
    await nc.flush(timeout=TIMEOUT)
    for publisher in extra.get("publishers", []):
        other = await connect(publisher.get("as", {}))
        for message in publisher["messages"]:
            await other.publish(message["subject"], message["data"].encode(), reply=message.get("reply", ""))
        await other.flush(timeout=TIMEOUT)
        await other.close()
    for message in extra.get("publish", []):
        await nc.publish(message["subject"], message["data"].encode(), reply=message.get("reply", ""))
    try:
        await nc.flush(timeout=TIMEOUT)
        await asyncio.sleep(0.3)
    except Exception as err:  # noqa: BLE001 - closed by the server: what it said is in `errors`
        errors.append(f"{type(err).__name__}: {err}")
    closed = nc.is_closed
    await nc.close()
    return {"connected": True, "got": got, "errors": errors, "closed": closed}


SCENARIOS = {
    "probe": probe,
    "publish_events": publish_events,
    "publish_bahamut": publish_bahamut,
    "tls_connect": tls_connect,
    "system_events": system_events,
    "permissions": permissions,
    "isolation": isolation,
    "pubsub": pubsub,
    "queue_group": queue_group,
    "request_reply": request_reply,
    "connect_only": connect_only,
    "max_payload": max_payload,
}


def main():
    url, scenario = sys.argv[1], sys.argv[2]
    extra = sys.argv[3] if len(sys.argv) > 3 else None
    result = asyncio.run(asyncio.wait_for(SCENARIOS[scenario](url, extra), 30))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
