"""Runs the same NATS client scenarios against nats-server (the Debian package) and Eventyard's
gateway, side by side, and lists every difference in what the client sees.

Usage: conformance.py EVENTYARD_BINARY [--json]

Raw scenarios send exact protocol bytes and compare the bytes that come back (INFO lines are
compared by the keys clients rely on); client scenarios run nats-py against both. Exit status 0
either way: the differences are the output. The Rust test `tests/e2e/conformance.rs` checks that they
are exactly the ones the README lists as kept on purpose."""

import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

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


def login(user, verbose=False):
    options = {"user": user, "pass": user, "verbose": verbose}
    return b"CONNECT " + json.dumps(options).encode() + b"\r\n"


# Accounts and permissions, the same on both servers (ACCOUNTS_NATS, ACCOUNTS_EVENTYARD): each
# scenario is a list of (connection, bytes) steps over one or more connections.
ACCOUNTS = {
    "deny_through_wildcard": [
        ("d", login("deny") + b"SUB orders.* 1\r\nSUB > 2\r\nPUB orders.secret 1\r\nx\r\nPUB orders.public 1\r\ny\r\nPING\r\n"),
    ],
    "wildcard_wider_than_allow": [
        ("n", login("narrow") + b"SUB orders.> 1\r\nSUB orders.* 2\r\nPUB orders.deep.secret 1\r\nx\r\nPUB orders.eu 1\r\ny\r\nPING\r\n"),
    ],
    "queue_permission": [
        ("w", login("worker") + b"SUB jobs.a 1\r\nSUB jobs.a others 2\r\nSUB jobs.a workers 3\r\nPUB jobs.a 1\r\nx\r\nPING\r\n"),
    ],
    "accounts_isolated": [
        ("a", login("a") + b"SUB > 1\r\nPING\r\n"),
        ("b", login("b") + b"SUB > 1\r\nPUB orders.x 1\r\nx\r\nPING\r\n"),
        ("a", b"PING\r\n"),
    ],
    "allow_responses": [
        ("svc", login("svc") + b"SUB svc.req 1\r\nPING\r\n"),
        ("team", login("team") + b"SUB _INBOX.r 9\r\nPUB svc.req _INBOX.r 2\r\nhi\r\nPING\r\n"),
        ("svc", b"PUB other 1\r\nx\r\nPUB _INBOX.r 2\r\nok\r\nPUB _INBOX.r 5\r\nagain\r\nPING\r\n"),
        ("team", b"PING\r\n"),
    ],
    "internal_prefix": [
        ("t", login("team") + b"SUB $A.> 1\r\nPUB $A.USERS.x 1\r\nx\r\nPING\r\n"),
    ],
    "wrong_password": [("x", b'CONNECT {"user":"a","pass":"wrong"}\r\n')],
    "pub_before_connect": [("x", b"PUB orders.x 5\r\nhello\r\n")],
}

USERS = [
    ("a", "USERS", None),
    ("b", "OTHER", None),
    ("team", "TEAM", None),
    ("deny", "TEAM", {"subscribe": {"deny": ["orders.secret"]}}),
    ("narrow", "TEAM", {"subscribe": {"allow": ["orders.*"]}}),
    ("worker", "TEAM", {"subscribe": {"allow": ["jobs.> workers"]}}),
    ("svc", "TEAM", {"subscribe": {"allow": ["svc.>"]}, "allow_responses": True}),
    ("admin", "SYS", None),
]


def accounts_nats(port, monitoring):
    accounts = {}
    for user, account, permissions in USERS:
        entry = {"user": user, "password": user}
        if permissions:
            entry["permissions"] = permissions
        accounts.setdefault(account, {"users": []})["users"].append(entry)
    return (
        f"port: {port}\nhttp_port: {monitoring}\nmax_payload: 1024\nsystem_account: SYS\n"
        f"accounts: {json.dumps(accounts)}\n"
    )


def accounts_eventyard(port, monitoring, workdir):
    users = ""
    for user, account, permissions in USERS:
        users += f'[[service.auth.users]]\nuser = "{user}"\npassword = "{user}"\naccount = "{account}"\n'
        if permissions:
            subscribe = permissions["subscribe"]
            rule = ", ".join(f"{key} = {json.dumps(value)}" for key, value in subscribe.items())
            responses = ", allow_responses = true" if permissions.get("allow_responses") else ""
            users += f"permissions = {{ subscribe = {{ {rule} }}{responses} }}\n"
    return (
        f'[service]\nhost = "127.0.0.1"\nport = {port}\nmax_payload = 1024\n'
        f'[service.monitoring]\nlisten = "127.0.0.1:{monitoring}"\n'
        f'[service.auth]\nsystem_account = "SYS"\n{users}'
        f'[http]\nlisten = "127.0.0.1:0"\n[plugins]\ndir = "{workdir}/plugins"\n'
    )

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


def start_servers(eventyard, workdir, accounts=False):
    """Starts nats-server and Eventyard; returns the processes, their client ports and (with
    `accounts`) their monitoring ports."""
    nats_port, gateway_port = free_port(), free_port()
    monitors = {"nats-server": free_port(), "eventyard": free_port()}
    conf = os.path.join(workdir, "nats.conf")
    with open(conf, "w") as f:
        f.write(accounts_nats(nats_port, monitors["nats-server"]) if accounts else f"port: {nats_port}\nmax_payload: 1024\n")
    toml = os.path.join(workdir, "eventyard.toml")
    with open(toml, "w") as f:
        if accounts:
            f.write(accounts_eventyard(gateway_port, monitors["eventyard"], workdir))
        else:
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
    return servers, {"nats-server": nats_port, "eventyard": gateway_port}, monitors


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


def talk_many(port, steps):
    """Runs `steps` ((connection, bytes)) over as many connections; returns what each received
    after its INFO line but the server's keepalive PINGs, `<closed>` marking a connection the
    server closed."""
    sockets, seen = {}, {}

    def drain(name):
        try:
            while True:
                chunk = sockets[name].recv(65536)
                if not chunk:
                    seen[name] += b"<closed>"
                    sockets[name].close()
                    return
                seen[name] += chunk
        except OSError:
            pass

    for name, data in steps:
        if name not in sockets:
            sockets[name] = socket.create_connection(("127.0.0.1", port))
            sockets[name].settimeout(0.3)
            seen[name] = b""
        try:
            sockets[name].sendall(data)
        except OSError:
            pass
        time.sleep(0.1)
        for other in sockets:
            if not seen[other].endswith(b"<closed>"):
                drain(other)
    out = {}
    for name, data in seen.items():
        # nats-server PINGs a new client a second or two after it connects; that is keepalive
        # timing, not an answer.
        out[name] = data.partition(b"\r\n")[2].replace(b"PING\r\n", b"").decode(errors="replace")
        if not data.endswith(b"<closed>"):
            sockets[name].close()
    return out


def run_client(port, scenario):
    try:
        result = asyncio.run(asyncio.wait_for(nats_py.SCENARIOS[scenario](f"nats://127.0.0.1:{port}", None), 30))
        if scenario == "queue_group":  # the split between members is round robin on one, random on the other
            result = {"total": result["a"] + result["b"], "both": result["a"] > 0 and result["b"] > 0}
        return result
    except Exception as err:  # noqa: BLE001
        return {"error": f"{type(err).__name__}: {err}"}


# The system account's view (seed 001), nats-server's `server/events.go`: what a system client
# sees while a user of account USERS connects, publishes, subscribes and leaves and another fails
# to log in, and the answers to the `$SYS.REQ` requests. Documents are compared by their keys.
SYSTEM_REQUESTS = [
    "$SYS.REQ.SERVER.PING",
    "$SYS.REQ.SERVER.PING.STATSZ",
    "$SYS.REQ.SERVER.{id}.STATSZ",
    "$SYS.REQ.SERVER.PING.CONNZ",
    "$SYS.REQ.SERVER.PING.SUBSZ",
    "$SYS.REQ.SERVER.PING.HEALTHZ",
    "$SYS.REQ.SERVER.PING.ACCOUNTZ",
    "$SYS.REQ.SERVER.PING.VARZ",
    "$SYS.REQ.ACCOUNT.USERS.CONNZ",
    "$SYS.REQ.ACCOUNT.USERS.SUBSZ",
    "$SYS.REQ.ACCOUNT.USERS.STATZ",
    "$SYS.REQ.ACCOUNT.USERS.CONNS",
    "$SYS.REQ.ACCOUNT.PING.STATZ",
]


def key_paths(value, prefix=""):
    """Every key path of a JSON document (`statsz.sent.msgs`; `connections[].cid` for arrays)."""
    paths = set()
    if isinstance(value, dict):
        for key, inner in value.items():
            path = f"{prefix}.{key}" if prefix else key
            paths.add(path)
            paths |= key_paths(inner, path)
    elif isinstance(value, list) and value:
        paths |= key_paths(value[0], f"{prefix}[]")
    return paths


# nats-server's monitoring endpoints, read while the user of USERS is connected and subscribed
# (`/varz` first: its `http_req_stats` counts the requests served before it).
MONITORING = [
    "/varz",
    "/connz",
    "/connz?subs=1",
    "/connz?subs=detail&auth=1",
    "/connz?sort=bytes_to&limit=1&offset=1",
    "/connz?acc=USERS&auth=true",
    "/subsz",
    "/subsz?subs=1",
    "/subsz?subs=1&acc=USERS&test=orders.x",
    "/accountz",
    "/accountz?acc=USERS",
    "/healthz",
]


def monitoring_view(port):
    """Each of MONITORING on one server's monitoring port: {"http <path>": its JSON}."""
    seen = {}
    for path in MONITORING:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as answer:
                seen[f"http {path}"] = json.loads(answer.read())
        except Exception as err:  # noqa: BLE001 - no answer is a difference too
            seen[f"http {path}"] = {"no answer": type(err).__name__}
    return seen


async def system_view(port, monitoring):
    """What the system account sees on one server: {document: its JSON}, subjects with the server
    id as `{id}`, and the traffic the disconnect event counted; and its monitoring endpoints."""
    url = f"nats://127.0.0.1:{port}"
    seen = {}
    sys_nc = await nats_py.nats.connect(url, user="admin", password="admin")
    server_id = None

    async def on_event(msg):
        if msg.data:
            subject = msg.subject.replace(server_id, "{id}") if server_id else msg.subject
            seen.setdefault(subject, json.loads(msg.data))

    ping = json.loads((await sys_nc.request("$SYS.REQ.SERVER.PING", b"", timeout=5)).data)
    server_id = ping["server"]["id"]
    await sys_nc.subscribe("$SYS.ACCOUNT.>", cb=on_event)
    await sys_nc.subscribe("$SYS.SERVER.>", cb=on_event)
    await sys_nc.flush()
    user = await nats_py.nats.connect(url, user="a", password="a", name="conformance")
    inbox = await user.subscribe("orders.>")
    for i in range(2):
        await user.publish("orders.x", f"m{i}".encode())
    await user.flush()
    for _ in range(2):
        await inbox.next_msg(timeout=5)
    try:
        await nats_py.nats.connect(url, user="a", password="wrong", allow_reconnect=False, connect_timeout=5)
    except Exception:  # noqa: BLE001 - refused, as it should be
        pass
    for subject in SYSTEM_REQUESTS:
        try:
            reply = await sys_nc.request(subject.replace("{id}", server_id), b"", timeout=2)
            seen[f"reply {subject}"] = json.loads(reply.data)
        except Exception as err:  # noqa: BLE001 - no answer is a difference too
            seen[f"reply {subject}"] = {"no answer": type(err).__name__}
    seen.update(await asyncio.get_running_loop().run_in_executor(None, monitoring_view, monitoring))
    await user.close()
    await asyncio.sleep(0.5)
    await sys_nc.close()
    return seen


def system_differences(eventyard):
    """Runs `system_view` on both servers; lists, per document, the keys only nats-server's has
    (`missing`) and only Eventyard's has (`extra`), and differences in the traffic counted."""
    with tempfile.TemporaryDirectory() as workdir:
        servers, ports, monitors = start_servers(eventyard, workdir, True)
        try:
            views = {
                name: asyncio.run(asyncio.wait_for(system_view(port, monitors[name]), 60)) for name, port in ports.items()
            }
        finally:
            for server in servers:
                server.terminate()
                server.wait(10)
    differences = []
    nats_view, ours = views["nats-server"], views["eventyard"]
    for document in sorted(set(nats_view) | set(ours)):
        theirs, mine = key_paths(nats_view.get(document, {})), key_paths(ours.get(document, {}))
        if document not in ours or document not in nats_view:
            differences.append({"document": document, "only": "nats-server" if document in nats_view else "eventyard"})
            continue
        if theirs != mine:
            differences.append({"document": document, "missing": sorted(theirs - mine), "extra": sorted(mine - theirs)})
    # Beyond the keys, the counts a monitoring tool shows (nats-server's internal clients and
    # subscriptions are in no CONNZ, and the filtered SUBSZ counts the user's alone).
    for document in [path for path in nats_view if path.startswith("http /connz")] + [f"http {MONITORING[8]}"]:
        counts = {
            name: {key: view.get(document, {}).get(key) for key in ("num_connections", "total")}
            for name, view in views.items()
        }
        if counts["nats-server"] != counts["eventyard"]:
            differences.append({"document": f"{document} counts", **counts})
    disconnect = "$SYS.ACCOUNT.USERS.DISCONNECT"
    traffic = {name: {k: view.get(disconnect, {}).get(k) for k in ("sent", "received")} for name, view in views.items()}
    if traffic["nats-server"] != traffic["eventyard"]:
        differences.append({"document": f"{disconnect} traffic", **traffic})
    return differences


def compare(eventyard, accounts, scenarios):
    """Starts both servers (with the shared accounts when `accounts`), runs each of `scenarios`
    ((name, run) where run(port) returns what a client saw) on both, and returns the differences."""
    differences = []
    with tempfile.TemporaryDirectory() as workdir:
        servers, ports, _ = start_servers(eventyard, workdir, accounts)
        try:
            for name, run in scenarios:
                seen = {server: run(port) for server, port in ports.items()}
                if seen["nats-server"] != seen["eventyard"]:
                    differences.append({"scenario": name, **seen})
        finally:
            for server in servers:
                server.terminate()
                server.wait(10)
    return differences


def main():
    eventyard = os.path.abspath(sys.argv[1])
    as_json = "--json" in sys.argv
    plain = [(name, lambda port, lines=lines: talk(port, lines)) for name, lines in RAW.items()]
    plain += [(f"client:{name}", lambda port, name=name: run_client(port, name)) for name in CLIENT]
    accounts = [(f"accounts:{name}", lambda port, steps=steps: talk_many(port, steps)) for name, steps in ACCOUNTS.items()]
    differences = compare(eventyard, False, plain) + compare(eventyard, True, accounts)
    system = system_differences(eventyard)
    count = len(RAW) + len(CLIENT) + len(ACCOUNTS)
    if as_json:
        print(json.dumps({"scenarios": count, "differences": differences, "system": system}))
        return
    print(f"{count} scenarios, {len(differences)} difference(s)")
    for difference in differences:
        print(f"\n{difference['scenario']}")
        print(f"  nats-server: {difference['nats-server']}")
        print(f"  eventyard:   {difference['eventyard']}")
    print(f"\nsystem account: {len(system)} document(s) differ")
    for difference in system:
        print(json.dumps(difference))


if __name__ == "__main__":
    main()
