//! A real Kafka-protocol broker for end-to-end tests — Tansu (`scripts/setup --test` installs it)
//! on a free loopback port, in memory — and PyPI's confluent-kafka reading what arrived, so a
//! test checks records with a client that is not the router's own.

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

/// A running Tansu broker, killed on drop.
pub struct KafkaBroker {
    child: std::process::Child,
    pub addr: SocketAddr,
}

impl KafkaBroker {
    /// Starts it and waits until it accepts connections.
    pub async fn start() -> KafkaBroker {
        let port = super::free_port();
        let url = format!("tcp://127.0.0.1:{port}");
        let child = Command::new("tansu")
            .args(["broker", "--listener-url", &url, "--advertised-listener-url", &url])
            .args(["--storage-engine", "memory://tansu/"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("tansu runs (scripts/setup --test installs it)");
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        super::wait_for_port(addr, "tansu").await;
        KafkaBroker { child, addr }
    }

    /// `host:port`, as `[kafka] brokers` and clients take it.
    pub fn bootstrap(&self) -> String {
        self.addr.to_string()
    }

    /// Creates `topic` (Tansu does not create topics on produce).
    pub fn create_topic(&self, topic: &str, partitions: u32) {
        let output = Command::new("tansu")
            .args(["topic", "create", topic, "--partitions", &partitions.to_string()])
            .args(["--broker", &format!("tcp://{}", self.addr)])
            .output()
            .expect("tansu runs");
        assert!(output.status.success(), "creating topic {topic}: {}", String::from_utf8_lossy(&output.stderr));
    }

    /// Every record of `topic` once `count` arrived (or `timeout` passed), read by confluent-kafka:
    /// `{partition, offset, key, value, headers}` each.
    pub fn consume(&self, topic: &str, count: usize, timeout: Duration) -> Vec<serde_json::Value> {
        let script = super::repo_root().join("tests/clients/kafka_py.py");
        let output = Command::new("python3")
            .arg(script)
            .args([&self.bootstrap(), "consume", topic, &count.to_string(), &timeout.as_secs_f64().to_string()])
            .output()
            .expect("python3 runs");
        assert!(output.status.success(), "consuming {topic}: {}", String::from_utf8_lossy(&output.stderr));
        serde_json::from_slice(&output.stdout).expect("kafka_py.py prints JSON")
    }
}

impl Drop for KafkaBroker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
