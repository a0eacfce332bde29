//! Memory of a running process, for the resource-bound tests and the benchmarks: its resident set,
//! and what it grows by per connected, idle NATS client.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _};

/// Resident memory of process `pid`, in bytes.
pub fn resident(pid: u32) -> u64 {
    status_bytes(pid, "VmRSS:")
}

/// The most resident memory process `pid` has had, in bytes.
pub fn peak_resident(pid: u32) -> u64 {
    status_bytes(pid, "VmHWM:")
}

fn status_bytes(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("the process's status reads");
    let kib = status.lines().find_map(|line| line.strip_prefix(field)).expect("the field is there");
    kib.trim().trim_end_matches("kB").trim().parse::<u64>().expect("the field is a number") * 1024
}

/// What `work` grows process `pid`'s resident memory by, in bytes, with what `work` returns (held
/// until after the measurement). The process is let settle before and after: settling time for a
/// measurement (a process just started, work after a connect, the allocator), not a wait for an
/// event.
pub async fn growth<T>(pid: u32, work: impl std::future::Future<Output = T>) -> (u64, T) {
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = resident(pid);
    let kept = work.await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    (resident(pid).saturating_sub(before), kept)
}

/// Bytes of resident memory process `pid` grows by for each of `count` NATS clients that connect
/// to `addr`, exchange a PING and stay idle.
pub async fn per_idle_connection(pid: u32, addr: SocketAddr, count: usize) -> f64 {
    let (grown, _connections) = growth(pid, async {
        let mut connections = Vec::with_capacity(count);
        for _ in 0..count {
            let stream = tokio::net::TcpStream::connect(addr).await.expect("the server accepts");
            let (read, mut write) = stream.into_split();
            let mut lines = tokio::io::BufReader::new(read).lines();
            lines.next_line().await.expect("INFO comes").expect("INFO comes");
            write.write_all(b"CONNECT {\"verbose\":false}\r\nPING\r\n").await.expect("CONNECT is sent");
            while lines.next_line().await.expect("the server answers").expect("the server answers") != "PONG" {}
            connections.push((lines, write));
        }
        connections
    })
    .await;
    grown as f64 / count as f64
}
