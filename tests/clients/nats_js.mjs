/**
 * Client scenarios run with nats.js (the `nats` package from npm) against a NATS server: Eventyard's
 * gateway, or nats-server for comparison. Usage: node nats_js.mjs URL SCENARIO [EXTRA]. URL may carry
 * `user:pass@` or `token@`; EXTRA is a token (as for nats_py.py) or, for tls_connect, JSON naming
 * the PEM files. Prints one JSON object with what the client saw; the Rust tests assert on it. Every
 * wait has a timeout; an unexpected failure exits non-zero with the error on stderr.
 */

import { connect, headers, ErrorCode, Events } from "nats";

const TIMEOUT = 5000;
const SCENARIO_TIMEOUT = 30000;

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Resolves with `promise`, or rejects when it takes longer than `ms`, naming `what`. */
function within(promise, what, ms = TIMEOUT) {
    let timer;
    const timeout = new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
    });
    return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** A promise and the functions that settle it. */
function signal() {
    let resolve, reject;
    const promise = new Promise((res, rej) => {
        resolve = res;
        reject = rej;
    });
    return { promise, resolve, reject };
}

/**
 * Connection options for `url`: nats.js wants `host:port` in `servers` and credentials as options
 * (it does not take userinfo from the URL reliably). `token` (EXTRA) is used when the URL has none.
 */
function options(url, token, extra = {}) {
    const parsed = new URL(url);
    const opts = { servers: parsed.host, reconnect: false, timeout: TIMEOUT, ...extra };
    const user = decodeURIComponent(parsed.username);
    if (parsed.password) {
        opts.user = user;
        opts.pass = decodeURIComponent(parsed.password);
    } else if (user) {
        opts.token = user;
    } else if (token) {
        opts.token = token;
    }
    return opts;
}

/** `msg.headers` as a plain object (one value: a string, several: an array), or null. */
function headersOf(msg) {
    if (!msg.headers) {
        return null;
    }
    const out = {};
    for (const [key, values] of msg.headers) {
        out[key] = values.length === 1 ? values[0] : values;
    }
    return out;
}

/** An error as the tests print it: its class, its nats.js code when it differs, and its message. */
function describe(err) {
    const code = err.code && err.code !== err.message ? ` [${err.code}]` : "";
    return `${err.name}${code}: ${err.message}`;
}

/** Pushes every error status of `nc` onto `errors`, with what a permission error refused. */
function collectErrors(nc, errors) {
    (async () => {
        for await (const status of nc.status()) {
            if (status.type === Events.Error) {
                const ctx = status.permissionContext;
                const what = ctx ? `: ${ctx.operation} to "${ctx.subject}"` : "";
                errors.push(`status ${status.data}${what}`);
            }
        }
    })();
}

async function pubsub(url, token) {
    const nc = await connect(options(url, token));
    const got = [];
    const done = signal();
    nc.subscribe("greet.*", {
        callback: (err, msg) => {
            if (err) {
                done.reject(err);
                return;
            }
            got.push({ subject: msg.subject, data: decoder.decode(msg.data), headers: headersOf(msg) });
            if (got.length === 10) {
                done.resolve();
            }
        },
    });
    for (let i = 0; i < 9; i++) {
        nc.publish(`greet.n${i}`, encoder.encode(`hello ${i}`));
    }
    const h = headers();
    h.set("X-Trace", "abc");
    nc.publish("greet.h", encoder.encode("with headers"), { headers: h });
    await within(done.promise, "10 messages on greet.*");
    await within(nc.drain(), "drain");
    return { got };
}

async function queue_group(url, token) {
    const nc = await connect(options(url, token));
    const counts = { a: 0, b: 0 };
    const done = signal();
    const counter = (name) => (err) => {
        if (err) {
            done.reject(err);
            return;
        }
        counts[name] += 1;
        if (counts.a + counts.b === 100) {
            done.resolve();
        }
    };
    nc.subscribe("jobs", { queue: "workers", callback: counter("a") });
    nc.subscribe("jobs", { queue: "workers", callback: counter("b") });
    await within(nc.flush(), "flush");
    for (let i = 0; i < 100; i++) {
        nc.publish("jobs", encoder.encode(String(i)));
    }
    await within(done.promise, "100 messages on jobs");
    // Any message delivered twice would arrive now.
    await sleep(200);
    await within(nc.drain(), "drain");
    return counts;
}

async function request_reply(url, token) {
    const nc = await connect(options(url, token));
    nc.subscribe("svc.echo", {
        callback: (err, msg) => {
            if (!err) {
                msg.respond(encoder.encode(decoder.decode(msg.data).toUpperCase()));
            }
        },
    });
    await within(nc.flush(), "flush");
    const reply = await nc.request("svc.echo", encoder.encode("ping"), { timeout: TIMEOUT });
    let noResponders = false;
    try {
        await nc.request("svc.nobody", encoder.encode("x"), { timeout: TIMEOUT });
    } catch (err) {
        if (err.code !== ErrorCode.NoResponders) {
            throw err;
        }
        noResponders = true;
    }
    await within(nc.drain(), "drain");
    return { reply: decoder.decode(reply.data), no_responders: noResponders };
}

async function connect_only(url, token) {
    let nc;
    try {
        nc = await connect(options(url, token));
    } catch (err) {
        return { connected: false, error: describe(err) };
    }
    await within(nc.close(), "close");
    return { connected: true, error: null };
}

async function max_payload(url, token) {
    const nc = await connect(options(url, token));
    const infoMax = nc.info.max_payload;
    let raised = null;
    try {
        nc.publish("big", new Uint8Array(infoMax + 1));
    } catch (err) {
        raised = describe(err);
    }
    await within(nc.close(), "close");
    return { max_payload: infoMax, raised };
}

/**
 * A user denied `secret.>` publishes there and subscribes to $SYS.>: both are refused. nats.js
 * reports a server's permission error as a status event with the code and what was refused, and
 * also to the subscription it names, with the server's own text.
 */
async function permissions(url, token) {
    const nc = await connect(options(url, token));
    const errors = [];
    collectErrors(nc, errors);
    nc.publish("secret.plans", encoder.encode("x"));
    nc.subscribe("$SYS.>", {
        callback: (err) => {
            if (err) {
                errors.push(`subscription ${describe(err)}`);
            }
        },
    });
    await within(nc.flush(), "flush");
    await sleep(300);
    await within(nc.close(), "close");
    return { errors };
}

/** Connects over TLS trusting `ca` and presenting `cert`/`key`, publishes and reads it back. */
async function tls_connect(url, paths) {
    const { ca, cert, key } = JSON.parse(paths);
    let nc;
    try {
        nc = await connect(options(url, null, { tls: { caFile: ca, certFile: cert, keyFile: key } }));
    } catch (err) {
        return { connected: false, error: describe(err) };
    }
    const sub = nc.subscribe("tls.check", { max: 1 });
    nc.publish("tls.check", encoder.encode("over tls"));
    let data = null;
    await within(
        (async () => {
            for await (const msg of sub) {
                data = decoder.decode(msg.data);
            }
        })(),
        "the message on tls.check",
    );
    await within(nc.close(), "close");
    return { connected: true, data };
}

/**
 * What an attacker sees: as nats_py.py's `probe`. Connects as `extra.as`, subscribes to each
 * `extra.subscribe` pattern ("subject" or "subject queue"), lets `extra.publishers` publish, publishes
 * `extra.publish` itself, and returns the messages it got and the errors the server sent.
 */
async function probe(url, extra) {
    const spec = JSON.parse(extra);
    const creds = (as = {}) => ({ user: as.user, pass: as.pass, token: as.token });
    const errors = [];
    const got = [];
    let nc;
    try {
        nc = await connect(options(url, null, creds(spec.as)));
    } catch (err) {
        return { connected: false, error: describe(err), errors };
    }
    collectErrors(nc, errors);
    for (const entry of spec.subscribe ?? []) {
        const [subject, queue] = entry.split(" ");
        nc.subscribe(subject, {
            queue,
            callback: (err, msg) => {
                if (err) {
                    errors.push(`subscription ${describe(err)}`);
                } else {
                    got.push({ via: entry, subject: msg.subject, data: decoder.decode(msg.data) });
                }
            },
        });
    }
    await within(nc.flush(), "flush");
    for (const publisher of spec.publishers ?? []) {
        const other = await connect(options(url, null, creds(publisher.as)));
        for (const message of publisher.messages) {
            other.publish(message.subject, encoder.encode(message.data), { reply: message.reply });
        }
        await within(other.flush(), "the publisher's flush");
        await within(other.close(), "the publisher's close");
    }
    for (const message of spec.publish ?? []) {
        nc.publish(message.subject, encoder.encode(message.data), { reply: message.reply });
    }
    try {
        await within(nc.flush(), "flush");
        await sleep(300);
    } catch (err) {
        errors.push(describe(err));
    }
    const closed = nc.isClosed();
    if (!closed) {
        await within(nc.close(), "close");
    }
    return { connected: true, got, errors, closed };
}

const SCENARIOS = {
    probe,
    pubsub,
    queue_group,
    request_reply,
    connect_only,
    max_payload,
    permissions,
    tls_connect,
};

async function main() {
    const [url, scenario, extra] = process.argv.slice(2);
    const run = SCENARIOS[scenario];
    if (!url || !run) {
        console.error(`usage: node nats_js.mjs URL SCENARIO [EXTRA]; scenarios: ${Object.keys(SCENARIOS).join(", ")}`);
        process.exit(2);
    }
    try {
        const result = await within(run(url, extra ?? null), `scenario ${scenario}`, SCENARIO_TIMEOUT);
        process.stdout.write(`${JSON.stringify(result)}\n`, () => process.exit(0));
    } catch (err) {
        console.error(`nats.js ${scenario} failed: ${err.stack ?? describe(err)}`);
        process.exit(1);
    }
}

main();
