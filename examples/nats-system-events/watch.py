"""Watches the system account's events (seed 001) and asks the server's and an account's
requests; prints one JSON line per event or answer. Usage: python3 watch.py [URL] [SECONDS]; default nats://admin:changeit@127.0.0.1:4222
for 30 s. Needs nats-py (pip install nats-py)."""

import asyncio
import json
import sys

import nats


async def main(url, seconds):
    nc = await nats.connect(url)

    async def show(msg):
        # Requests (this script's own among them) have empty bodies; events are JSON.
        try:
            data = json.loads(msg.data) if msg.data else None
        except ValueError:
            data = msg.data.decode(errors="replace")
        print(json.dumps({"subject": msg.subject, "data": data}), flush=True)

    async def ask(subject):
        try:
            reply = await nc.request(subject, b"", timeout=5)
            print(json.dumps({"subject": subject, "data": json.loads(reply.data)}), flush=True)
        except nats.errors.TimeoutError:
            print(json.dumps({"subject": subject, "data": None}), flush=True)

    # As the seed: everything the system account sees (its `>` takes in every $SYS subject).
    await nc.subscribe(">", cb=show)
    ping = json.loads((await nc.request("$SYS.REQ.SERVER.PING", b"", timeout=5)).data)
    server_id = ping["server"]["id"]
    print(json.dumps({"subject": "$SYS.REQ.SERVER.PING", "data": ping}), flush=True)
    for subject in [f"$SYS.REQ.SERVER.{server_id}.STATSZ", "$SYS.REQ.SERVER.PING.CONNZ", "$SYS.REQ.SERVER.PING.HEALTHZ"]:
        await ask(subject)
    await asyncio.sleep(seconds / 2)
    # By then a user of USERS is connected (the test's, or yours): what the account is doing.
    for subject in ["$SYS.REQ.ACCOUNT.USERS.CONNZ", "$SYS.REQ.ACCOUNT.USERS.STATZ", "$SYS.REQ.ACCOUNT.PING.STATZ"]:
        await ask(subject)
    await asyncio.sleep(seconds / 2)
    await nc.close()


if __name__ == "__main__":
    url = sys.argv[1] if len(sys.argv) > 1 else "nats://admin:changeit@127.0.0.1:4222"
    seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 30
    asyncio.run(main(url, seconds))
