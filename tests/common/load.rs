//! Load for tests and benchmarks: a publisher that sends numbered events over HTTP, one request at
//! a time, for as long as it runs, and the check that every number arrived exactly once.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use serde_json::{Value, json};

/// Publishes events numbered 0, 1, 2, ... (the number is the event id and `data.n`) until
/// [`finish`](Self::finish). Every publish must be accepted (202): a reload may not refuse events.
pub struct NumberedPublisher {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl NumberedPublisher {
    /// Starts publishing to `url` (`http://.../v1/events/SUBJECT`).
    pub fn start(url: String) -> NumberedPublisher {
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let task = tokio::spawn({
            let (stop, sent) = (stop.clone(), sent.clone());
            async move {
                let client = reqwest::Client::new();
                while !stop.load(Ordering::Relaxed) {
                    let n = sent.load(Ordering::Relaxed);
                    let event = json!({"specversion": "1.0", "id": n.to_string(), "source": "/load", "type": "n", "data": {"n": n}});
                    let response = client
                        .post(&url)
                        .header("content-type", "application/cloudevents+json")
                        .body(event.to_string())
                        .send()
                        .await
                        .expect("the router answers");
                    let status = response.status();
                    assert_eq!(status, 202, "event {n} refused: {}", response.text().await.unwrap_or_default());
                    sent.store(n + 1, Ordering::Relaxed);
                }
            }
        });
        NumberedPublisher { stop, sent, task }
    }

    /// Events accepted so far: numbers `0..sent()`.
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// Stops publishing; returns how many events were accepted.
    pub async fn finish(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.expect("the publisher did not fail");
        self.sent.load(Ordering::Relaxed)
    }
}

/// Events keyed by their number (their id); panics on a duplicate.
pub fn by_number<'a>(events: impl IntoIterator<Item = &'a Value>) -> BTreeMap<u64, Value> {
    let mut numbered = BTreeMap::new();
    for event in events {
        let n: u64 = event["id"].as_str().and_then(|id| id.parse().ok()).expect("events are numbered");
        assert!(numbered.insert(n, event.clone()).is_none(), "event {n} arrived twice");
    }
    numbered
}
