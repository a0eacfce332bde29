"""Watches the system account's events (seed 001) and asks the server requests; prints one JSON
line per event. Usage: python3 watch.py [URL] [SECONDS]; default nats://admin:changeit@127.0.0.1:4222
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

    await nc.subscribe("$SYS.>", cb=show)
    ping = await nc.request("$SYS.REQ.SERVER.PING", b"", timeout=5)
    server_id = json.loads(ping.data)["server"]["id"]
    print(json.dumps({"subject": "$SYS.REQ.SERVER.PING", "data": json.loads(ping.data)}), flush=True)
    statsz = await nc.request(f"$SYS.REQ.SERVER.{server_id}.STATSZ", b"", timeout=5)
    print(json.dumps({"subject": f"$SYS.REQ.SERVER.{server_id}.STATSZ", "data": json.loads(statsz.data)}), flush=True)
    await asyncio.sleep(seconds)
    await nc.close()


if __name__ == "__main__":
    url = sys.argv[1] if len(sys.argv) > 1 else "nats://admin:changeit@127.0.0.1:4222"
    seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 30
    asyncio.run(main(url, seconds))
