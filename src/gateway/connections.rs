//! The gateway's authenticated connections, as system events and `$SYS` requests report them: who
//! each one is, what it has sent and received, how many subscriptions it holds, and the totals of
//! each account's connections that are gone. Each client updates its own counters (no lock on the
//! message path); readers sum them. Never touches a socket.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use time::OffsetDateTime;

/// Messages and bytes, as nats-server's `DataStats`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DataStats {
    pub msgs: u64,
    pub bytes: u64,
}

impl DataStats {
    fn add(&mut self, other: DataStats) {
        self.msgs += other.msgs;
        self.bytes += other.bytes;
    }
}

/// What one connection published (`in`) and was sent (`out`), from the server's side.
#[derive(Debug, Default)]
pub struct Traffic {
    pub in_msgs: AtomicU64,
    pub in_bytes: AtomicU64,
    pub out_msgs: AtomicU64,
    pub out_bytes: AtomicU64,
}

impl Traffic {
    pub fn inbound(&self) -> DataStats {
        DataStats { msgs: self.in_msgs.load(Ordering::Relaxed), bytes: self.in_bytes.load(Ordering::Relaxed) }
    }

    pub fn outbound(&self) -> DataStats {
        DataStats { msgs: self.out_msgs.load(Ordering::Relaxed), bytes: self.out_bytes.load(Ordering::Relaxed) }
    }
}

/// Who a connection is, once its CONNECT is accepted.
#[derive(Debug, Clone, Default)]
pub struct Who {
    pub account: String,
    pub user: Option<String>,
    pub name: Option<String>,
    pub lang: Option<String>,
    pub version: Option<String>,
}

/// One subscription of a connection, as `SUBSZ` lists it.
#[derive(Debug, Clone)]
pub struct SubscriptionInfo {
    pub subject: String,
    pub queue: Option<String>,
    /// Messages delivered to it.
    pub delivered: Arc<AtomicU64>,
}

/// Sends the connection a PING.
pub type Pinger = Box<dyn Fn() + Send + Sync>;

/// One client connection.
pub struct Connection {
    pub id: u64,
    pub ip: String,
    pub port: u16,
    pub start: OffsetDateTime,
    pub who: Mutex<Who>,
    pub traffic: Arc<Traffic>,
    /// By sid.
    pub subscriptions: Mutex<BTreeMap<String, SubscriptionInfo>>,
    /// When it last sent anything, in nanoseconds since 1970.
    pub last_activity: AtomicI64,
    /// The round trip of a PING, in nanoseconds; 0 until measured.
    rtt: AtomicU64,
    /// When the PING being measured went out.
    rtt_start: Mutex<Option<std::time::Instant>>,
    pinger: OnceLock<Pinger>,
}

impl Connection {
    pub fn new(id: u64, remote: std::net::SocketAddr, traffic: Arc<Traffic>) -> Connection {
        let start = OffsetDateTime::now_utc();
        Connection {
            id,
            ip: remote.ip().to_string(),
            port: remote.port(),
            start,
            who: Mutex::new(Who { account: crate::broker::account::GLOBAL_ACCOUNT.into(), ..Who::default() }),
            traffic,
            subscriptions: Mutex::default(),
            last_activity: AtomicI64::new(start.unix_timestamp_nanos() as i64),
            rtt: AtomicU64::new(0),
            rtt_start: Mutex::new(None),
            pinger: OnceLock::new(),
        }
    }

    /// How to send this connection a PING.
    pub fn set_pinger(&self, pinger: Pinger) {
        let _ = self.pinger.set(pinger);
    }

    /// Sends a PING to measure the round trip, unless one is out (nats-server measures when it is
    /// asked for one it does not have yet).
    pub fn measure_rtt(&self) {
        let Some(pinger) = self.pinger.get() else { return };
        let mut start = self.rtt_start.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if start.is_none() {
            *start = Some(std::time::Instant::now());
            pinger();
        }
    }

    /// The server sent a PING of its own (keepalive): its PONG measures the round trip too.
    pub fn pinged(&self) {
        let mut start = self.rtt_start.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        start.get_or_insert_with(std::time::Instant::now);
    }

    /// A PONG arrived.
    pub fn pong(&self) {
        let sent = self.rtt_start.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).take();
        if let Some(sent) = sent {
            let rtt = u64::try_from(sent.elapsed().as_nanos()).unwrap_or(u64::MAX).max(1);
            self.rtt.store(rtt, Ordering::Relaxed);
        }
    }

    /// The measured round trip, if any: to the microsecond below a millisecond, to the
    /// millisecond above, as nats-server reports it.
    pub fn rtt(&self) -> Option<std::time::Duration> {
        let nanos = self.rtt.load(Ordering::Relaxed);
        let unit = if nanos < 1_000_000 { 1_000 } else { 1_000_000 };
        (nanos > 0).then(|| std::time::Duration::from_nanos((nanos / unit).max(1) * unit))
    }

    pub fn who(&self) -> Who {
        self.who.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }

    pub fn account(&self) -> String {
        self.who.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).account.clone()
    }

    pub fn subscriptions(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, SubscriptionInfo>> {
        self.subscriptions.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// It sent something now.
    pub fn active(&self) {
        self.last_activity.store(OffsetDateTime::now_utc().unix_timestamp_nanos() as i64, Ordering::Relaxed);
    }

    pub fn last_activity(&self) -> OffsetDateTime {
        let nanos = i128::from(self.last_activity.load(Ordering::Relaxed));
        OffsetDateTime::from_unix_timestamp_nanos(nanos).unwrap_or(self.start)
    }
}

/// One account's connections now, and its traffic, the gone connections' included.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccountStat {
    pub conns: usize,
    /// What the account's clients published.
    pub received: DataStats,
    /// What the account's clients were sent.
    pub sent: DataStats,
    pub slow_consumers: u64,
}

/// What gone connections of an account add up to.
#[derive(Debug, Default)]
struct Retired {
    received: DataStats,
    sent: DataStats,
    slow_consumers: u64,
}

/// Every authenticated connection, by id.
#[derive(Default)]
pub struct Connections {
    live: Mutex<BTreeMap<u64, Arc<Connection>>>,
    retired: Mutex<HashMap<String, Retired>>,
}

impl Connections {
    pub fn add(&self, connection: Arc<Connection>) {
        self.live().insert(connection.id, connection);
    }

    /// Removes connection `id`, keeping its traffic in its account's totals.
    pub fn remove(&self, id: u64, slow_consumer: bool) -> Option<Arc<Connection>> {
        let connection = self.live().remove(&id)?;
        let mut retired = self.retired.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let totals = retired.entry(connection.account()).or_default();
        totals.received.add(connection.traffic.inbound());
        totals.sent.add(connection.traffic.outbound());
        totals.slow_consumers += u64::from(slow_consumer);
        Some(connection)
    }

    /// The connections now, by id.
    pub fn all(&self) -> Vec<Arc<Connection>> {
        self.live().values().cloned().collect()
    }

    /// `account`'s connections and traffic.
    pub fn account(&self, account: &str) -> AccountStat {
        let mut stat = AccountStat::default();
        for connection in self.live().values().filter(|c| c.account() == account) {
            stat.conns += 1;
            stat.received.add(connection.traffic.inbound());
            stat.sent.add(connection.traffic.outbound());
        }
        if let Some(retired) = self.retired.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).get(account) {
            stat.received.add(retired.received);
            stat.sent.add(retired.sent);
            stat.slow_consumers = retired.slow_consumers;
        }
        stat
    }

    /// The accounts that have a connection now.
    pub fn active_accounts(&self) -> Vec<String> {
        let mut accounts: Vec<String> = self.live().values().map(|c| c.account()).collect();
        accounts.sort();
        accounts.dedup();
        accounts
    }

    /// The subscriptions every connection holds.
    pub fn subscriptions(&self) -> usize {
        self.live().values().map(|c| c.subscriptions().len()).sum()
    }

    fn live(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Arc<Connection>>> {
        self.live.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connection(id: u64, account: &str, published: u64) -> Arc<Connection> {
        let traffic = Arc::new(Traffic::default());
        traffic.in_msgs.store(published, Ordering::Relaxed);
        traffic.out_msgs.store(1, Ordering::Relaxed);
        let connection = Connection::new(id, "127.0.0.1:1".parse().unwrap(), traffic);
        connection.who.lock().unwrap().account = account.into();
        for sid in ["1", "2"] {
            let info = SubscriptionInfo { subject: "a".into(), queue: None, delivered: Arc::default() };
            connection.subscriptions().insert(sid.into(), info);
        }
        Arc::new(connection)
    }

    #[test]
    fn an_accounts_traffic_counts_its_gone_connections_too() {
        let connections = Connections::default();
        connections.add(connection(1, "A", 3));
        connections.add(connection(2, "A", 4));
        connections.add(connection(3, "B", 5));
        assert_eq!(connections.subscriptions(), 6);
        assert_eq!(connections.active_accounts(), ["A", "B"]);
        connections.remove(2, true);
        let a = connections.account("A");
        assert_eq!((a.conns, a.received.msgs, a.sent.msgs, a.slow_consumers), (1, 7, 2, 1));
        assert_eq!(connections.account("C"), AccountStat::default());
    }
}
