//! NATS clients for end-to-end tests: a raw protocol client over a TCP socket (for exact bytes,
//! misbehaving clients and slow readers), and the real nats-py and nats.js clients running the
//! scenarios of `tests/clients/`.

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A NATS protocol client that sends and reads raw bytes.
pub struct RawClient {
    pub stream: TcpStream,
    /// The server's INFO line.
    pub info: String,
    seen: Vec<u8>,
}

impl RawClient {
    /// Connects and reads the server's INFO line.
    pub async fn connect(addr: SocketAddr) -> RawClient {
        let stream = TcpStream::connect(addr).await.expect("the gateway accepts");
        let mut client = RawClient { stream, info: String::new(), seen: Vec::new() };
        client.info = client.read_until("\r\n", Duration::from_secs(5)).await;
        client
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("send");
    }

    /// Reads until what arrived since the last call contains `needle`, and returns it all; panics
    /// with what arrived if it does not come in time or the connection closes first.
    pub async fn read_until(&mut self, needle: &str, timeout: Duration) -> String {
        self.read_until_any(&[needle], timeout).await
    }

    /// As [`read_until`](Self::read_until), up to the first of `needles` to arrive.
    pub async fn read_until_any(&mut self, needles: &[&str], timeout: Duration) -> String {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let found = needles.iter().filter_map(|needle| Some(find(&self.seen, needle.as_bytes())? + needle.len()));
            if let Some(end) = found.min() {
                let rest = self.seen.split_off(end);
                let got = std::mem::replace(&mut self.seen, rest);
                return String::from_utf8_lossy(&got).into_owned();
            }
            let mut chunk = vec![0; 64 << 10];
            let read = tokio::time::timeout_at(deadline, self.stream.read(&mut chunk)).await;
            match read {
                Ok(Ok(n)) if n > 0 => self.seen.extend_from_slice(&chunk[..n]),
                outcome => panic!(
                    "none of {needles:?} ({outcome:?}); got {:?}",
                    String::from_utf8_lossy(&self.seen[self.seen.len().saturating_sub(300)..])
                ),
            }
        }
    }

    /// Reads until the server closes the connection; returns the last bytes it sent.
    pub async fn read_to_close(&mut self, timeout: Duration) -> String {
        let mut rest = Vec::new();
        tokio::time::timeout(timeout, self.stream.read_to_end(&mut rest)).await.expect("the server closes").ok();
        self.seen.extend_from_slice(&rest);
        String::from_utf8_lossy(&self.seen[self.seen.len().saturating_sub(300)..]).into_owned()
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|window| window == needle)
}

/// A real NATS client library, running the scenarios of `tests/clients/`: nats-py (PyPI) or
/// nats.js (the `nats` package from npm).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Client {
    Py,
    Js,
}

impl Client {
    pub const BOTH: [Client; 2] = [Client::Py, Client::Js];

    /// Runs `scenario` against `url` (`extra`: a token, a second URL or JSON, as the scenario
    /// wants) and returns what it printed.
    pub fn run(self, url: &str, scenario: &str, extra: Option<&str>) -> serde_json::Value {
        let clients = super::repo_root().join("tests/clients");
        let mut command = match self {
            Client::Py => Command::new("python3"),
            Client::Js => Command::new("node"),
        };
        command.arg(clients.join(if self == Client::Py { "nats_py.py" } else { "nats_js.mjs" }));
        command.arg(url).arg(scenario).args(extra);
        let output = command.output().expect("the client runs");
        assert!(
            output.status.success(),
            "{self:?} {scenario} failed: {}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice(&output.stdout).expect("the scenario prints JSON")
    }
}

/// A real `nats-server` on a free loopback port, killed on drop.
pub struct NatsServer {
    child: std::process::Child,
    pub addr: SocketAddr,
}

impl NatsServer {
    /// Whether `nats-server` is on PATH (benchmarks print Eventyard's figures alone without it).
    pub fn installed() -> bool {
        Command::new("nats-server").arg("--version").output().is_ok_and(|out| out.status.success())
    }

    /// Starts it and waits until it accepts connections.
    pub async fn start() -> NatsServer {
        NatsServer::start_with(super::free_port(), &[]).await
    }

    /// Starts it on `port` with further command-line `args`, and waits until it accepts connections.
    pub async fn start_with(port: u16, args: &[String]) -> NatsServer {
        let child = Command::new("nats-server")
            .args(["-a", "127.0.0.1", "-p", &port.to_string()])
            .args(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("nats-server runs (scripts/setup --test installs it)");
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        super::wait_for_port(addr, "nats-server").await;
        NatsServer { child, addr }
    }

    /// Starts one that requires TLS with `pki`'s server certificate and a client certificate its
    /// CA signed, as the platforms of seed 003 run it.
    pub async fn start_requiring_client_certificates(pki: &super::tls::Pki) -> NatsServer {
        let path = |p: &std::path::Path| p.display().to_string();
        let args = ["--tls", "--tlscert", &path(&pki.server.0), "--tlskey", &path(&pki.server.1)]
            .into_iter()
            .chain(["--tlscacert", &path(&pki.ca), "--tlsverify"])
            .map(str::to_owned)
            .collect::<Vec<_>>();
        NatsServer::start_with(super::free_port(), &args).await
    }

    pub fn url(&self) -> String {
        format!("nats://{}", self.addr)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A real NATS cluster on loopback: `nats-server` nodes with JetStream, each with its own store,
/// routed to one another. Nodes are killed on drop.
pub struct NatsCluster {
    pub nodes: Vec<Option<NatsServer>>,
    urls: Vec<String>,
    _store: tempfile::TempDir,
}

impl NatsCluster {
    /// Starts `size` nodes (one: a single JetStream server) and waits until JetStream answers.
    pub async fn start(size: usize) -> NatsCluster {
        let store = super::tempdir();
        let ports: Vec<(u16, u16)> = (0..size).map(|_| (super::free_port(), super::free_port())).collect();
        let routes: Vec<String> = ports.iter().map(|(_, cluster)| format!("nats://127.0.0.1:{cluster}")).collect();
        let mut nodes = Vec::new();
        for (i, (port, cluster)) in ports.iter().enumerate() {
            let dir = store.path().join(format!("n{i}"));
            let mut args: Vec<String> =
                ["-n", &format!("n{i}"), "-js", "-sd", &dir.display().to_string()].map(str::to_owned).to_vec();
            // One node is a plain JetStream server: a cluster of one never elects a meta leader.
            if size > 1 {
                let cluster = format!("nats://127.0.0.1:{cluster}");
                let flags = ["--cluster_name", "eventyard-test", "--cluster", &cluster, "--routes", &routes.join(",")];
                args.extend(flags.map(str::to_owned));
            }
            nodes.push(Some(NatsServer::start_with(*port, &args).await));
        }
        let urls = ports.iter().map(|(port, _)| format!("nats://127.0.0.1:{port}")).collect();
        let cluster = NatsCluster { nodes, urls, _store: store };
        cluster.wait_for_jetstream().await;
        cluster
    }

    /// Every node's client URL, as a TOML array's items.
    pub fn servers_toml(&self) -> String {
        self.urls.iter().map(|url| format!("\"{url}\"")).collect::<Vec<_>>().join(", ")
    }

    pub fn urls(&self) -> &[String] {
        &self.urls
    }

    /// Kills node `i` (SIGKILL).
    pub fn stop(&mut self, i: usize) {
        drop(self.nodes[i].take());
    }

    /// A client of the cluster (for what a test checks in JetStream directly).
    pub async fn client(&self) -> async_nats::Client {
        let servers: Vec<async_nats::ServerAddr> = self.urls.iter().map(|url| url.parse().expect("a URL")).collect();
        async_nats::connect(servers).await.expect("the cluster accepts a client")
    }

    async fn wait_for_jetstream(&self) {
        let client = self.client().await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let answer = client.request("$JS.API.INFO", "".into()).await;
            if let Ok(answer) = answer
                && serde_json::from_slice::<serde_json::Value>(&answer.payload)
                    .is_ok_and(|info| info.get("error").is_none())
            {
                return;
            }
            assert!(tokio::time::Instant::now() < deadline, "the NATS cluster's JetStream did not come up");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}
