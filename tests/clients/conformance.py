"""Runs the same NATS client scenarios against nats-server (the Debian package) and Eventyard's
gateway, side by side, and lists every difference in what the client sees.

Usage: conformance.py EVENTYARD_BINARY [--json]

Raw scenarios send exact protocol bytes and compare the bytes that come back (INFO lines are
compared by the keys clients rely on); client scenarios run nats-py against both. Exit status 0
either way: the differences are the output. The Rust test `tests/conformance.rs` checks that they
are exactly the ones the README lists as kept on purpose."""

import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))
import nats_py  # noqa: E402  (the scenarios the gateway tests also run)

RAW = {
    "verbose_pub_sub": [b'CONNECT {"verbose":true,"headers":true}\r\n', b"SUB foo 1\r\n", b"PUB foo 5\r\nhello\r\n", b"PING\r\n"],
    "headers": [b'CONNECT {"headers":true}\r\n', b"SUB foo 1\r\n", b"HPUB foo 18 20\r\nNATS/1.0\r\nA: b\r\n\r\nhi\r\n", b"PING\r\n"],
    "queue_group_and_reply": [b"CONNECT {}\r\n", b"SUB foo.> q 1\r\n", b"PUB foo.bar reply.x 2\r\nhi\r\n", b"PING\r\n"],
    "unsub_max": [b"CONNECT {}\r\n", b"SUB foo 1\r\n", b"UNSUB 1 2\r\n"] + [b"PUB foo 1\r\nx\r\n"] * 3 + [b"PING\r\n"],
    "echo_off": [b'CONNECT {"echo":false}\r\n', b"SUB foo 1\r\n", b"PUB foo 1\r\na\r\n", b"PING\r\n"],
    "no_responders": [b'CONNECT {"headers":true,"no_responders":true}\r\n', b"SUB _INBOX.1 1\r\n", b"PUB svc _INBOX.1 1\r\na\r\n", b"PING\r\n"],
    "lower_case_ops": [b"CONNECT {}\r\n", b"sub foo 1\r\n", b"pub foo 1\r\na\r\n", b"ping\r\n"],
    "ping_before_connect": [b"PING\r\n"],
    "unknown_op": [b"CONNECT {}\r\n", b"FOO\r\n"],
    "max_payload": [b'CONNECT {"verbose":false}\r\n', b"PUB foo 2000\r\n"],
    "pub_missing_size": [b'CONNECT {"verbose":false}\r\n', b"PUB foo\r\n"],
    "sub_missing_sid": [b'CONNECT {"verbose":false}\r\n', b"SUB foo\r\n"],
    "bad_connect_json": [b"CONNECT {bad json\r\n"],
    "payload_longer_than_size": [b"CONNECT {}\r\n", b"PUB foo 3\r\nhelloooo\r\n"],
    "hpub_without_headers_option": [b'CONNECT {"headers":false}\r\n', b"HPUB foo 12 13\r\nNATS/1.0\r\n\r\na\r\n"],
    "garbage": [b"X" * 5000],
    "empty_token_subject": [b"CONNECT {}\r\n", b"SUB foo.> 1\r\n", b"PUB foo..bar 1\r\nx\r\n", b"PING\r\n"],
}

CLIENT = ["pubsub", "queue_group", "request_reply", "max_payload"]

INFO_KEYS = ["proto", "headers", "max_payload", "auth_required", "tls_required"]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


def start_servers(eventyard, workdir):
    nats_port, gateway_port = free_port(), free_port()
    conf = os.path.join(workdir, "nats.conf")
    with open(conf, "w") as f:
        f.write(f"port: {nats_port}\nmax_payload: 1024\n")
    toml = os.path.join(workdir, "eventyard.toml")
    with open(toml, "w") as f:
        f.write(
            f'[service]\nhost = "127.0.0.1"\nport = {gateway_port}\nmax_payload = 1024\n'
            f'[http]\nlisten = "127.0.0.1:0"\n[plugins]\ndir = "{workdir}/plugins"\n'
        )
    quiet = subprocess.DEVNULL
    servers = [
        subprocess.Popen(["nats-server", "-c", conf], stdout=quiet, stderr=quiet),
        subprocess.Popen([eventyard, "serve", "--config", toml], stdout=quiet, stderr=quiet, cwd=workdir),
    ]
    wait_port(nats_port)
    wait_port(gateway_port)
    return servers, {"nats-server": nats_port, "eventyard": gateway_port}


def talk(port, lines):
    s = socket.create_connection(("127.0.0.1", port))
    s.settimeout(0.5)
    out = b""
    for line in lines:
        try:
            s.sendall(line)
        except OSError:
            break
        time.sleep(0.02)
    time.sleep(0.2)
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                out += b"<closed>"
                break
            out += chunk
    except OSError:
        pass
    s.close()
    first, _, rest = out.partition(b"\r\n")
    info = json.loads(first[5:]) if first.startswith(b"INFO ") else None
    info = {k: info.get(k, False) for k in INFO_KEYS} if info else first.decode(errors="replace")
    return {"info": info, "rest": rest.decode(errors="replace")}


def run_client(port, scenario):
    try:
        result = asyncio.run(asyncio.wait_for(nats_py.SCENARIOS[scenario](f"nats://127.0.0.1:{port}", None), 30))
        if scenario == "queue_group":  # the split between members is round robin on one, random on the other
            result = {"total": result["a"] + result["b"], "both": result["a"] > 0 and result["b"] > 0}
        return result
    except Exception as err:  # noqa: BLE001
        return {"error": f"{type(err).__name__}: {err}"}


def main():
    eventyard = os.path.abspath(sys.argv[1])
    as_json = "--json" in sys.argv
    with tempfile.TemporaryDirectory() as workdir:
        servers, ports = start_servers(eventyard, workdir)
        try:
            differences = []
            for name, lines in RAW.items():
                seen = {server: talk(port, lines) for server, port in ports.items()}
                if seen["nats-server"] != seen["eventyard"]:
                    differences.append({"scenario": name, **seen})
            for name in CLIENT:
                seen = {server: run_client(port, name) for server, port in ports.items()}
                if seen["nats-server"] != seen["eventyard"]:
                    differences.append({"scenario": f"client:{name}", **seen})
        finally:
            for server in servers:
                server.terminate()
                server.wait(10)
    if as_json:
        print(json.dumps({"scenarios": len(RAW) + len(CLIENT), "differences": differences}))
        return
    print(f"{len(RAW) + len(CLIENT)} scenarios, {len(differences)} difference(s)")
    for difference in differences:
        print(f"\n{difference['scenario']}")
        print(f"  nats-server: {difference['nats-server']}")
        print(f"  eventyard:   {difference['eventyard']}")


if __name__ == "__main__":
    main()
