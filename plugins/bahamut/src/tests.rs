use rmpv::Value as Pack;
use serde_json::json;

use super::*;

fn map(fields: Vec<(&str, Pack)>) -> Pack {
    Pack::Map(fields.into_iter().map(|(k, v)| (Pack::from(k), v)).collect())
}

fn pack(value: &Pack) -> Vec<u8> {
    let mut bytes = Vec::new();
    rmpv::encode::write_value(&mut bytes, value).unwrap();
    bytes
}

/// 2022-07-12T07:08:09.5Z as MessagePack's 12-byte timestamp (what Go's msgpack writes).
fn when() -> Pack {
    let mut bytes = 500_000_000u32.to_be_bytes().to_vec();
    bytes.extend_from_slice(&1_657_609_689i64.to_be_bytes());
    Pack::Ext(-1, bytes)
}

fn run(message: Vec<u8>) -> Result<Event, Error> {
    let event = Event::from_parts("squall-events", "m-1", "/eventyard/nats", "eventyard.raw", message);
    Bahamut.handle(event).map(|outcome| outcome.into_events(Event::from_parts("", "", "", "", "")).remove(0))
}

fn data(event: &Event) -> Value {
    serde_json::from_slice(&event.data).unwrap()
}

#[test]
fn a_msgpack_publication_of_a_msgpack_event() {
    let entity =
        map(vec![("ID", Pack::from("5d1")), ("name", Pack::from("web")), ("ports", Pack::from(vec![Pack::from(80)]))]);
    let elemental = map(vec![
        ("entity", Pack::Binary(pack(&entity))),
        ("identity", Pack::from("processingunit")),
        ("type", Pack::from("create")),
        ("timestamp", when()),
        ("encoding", Pack::from("application/msgpack")),
    ]);
    let publication = map(vec![
        ("data", Pack::Binary(pack(&elemental))),
        ("topic", Pack::from("squall-events")),
        ("encoding", Pack::from("application/msgpack")),
        ("responseMode", Pack::from(0)),
    ]);
    let out = run(pack(&publication)).unwrap();
    assert_eq!(
        data(&out),
        json!({"identity": "processingunit", "operation": "create", "timestamp": "2022-07-12T07:08:09.500Z",
               "topic": "squall-events", "entity": {"ID": "5d1", "name": "web", "ports": [80]}})
    );
    assert_eq!(out.context.type_, "processingunit.create");
    assert_eq!(out.context.time.as_deref(), Some("2022-07-12T07:08:09.500Z"));
    assert_eq!(out.context.datacontenttype.as_deref(), Some("application/json"));
}

#[test]
fn a_msgpack_publication_of_a_json_event() {
    let elemental = json!({"entity": {"name": "flow"}, "identity": "flowreport", "type": "update",
                           "timestamp": "2022-07-12T07:08:09Z", "encoding": "application/json"});
    let publication = map(vec![
        ("data", Pack::Binary(elemental.to_string().into_bytes())),
        ("topic", Pack::from("activities")),
        ("encoding", Pack::from("application/json")),
    ]);
    let out = data(&run(pack(&publication)).unwrap());
    assert_eq!((out["identity"].as_str(), out["operation"].as_str()), (Some("flowreport"), Some("update")));
    assert_eq!(out["entity"], json!({"name": "flow"}));
    assert_eq!(out["timestamp"], "2022-07-12T07:08:09Z");
}

#[test]
fn a_json_publication_and_a_bare_event() {
    let event =
        json!({"entity": {"name": "x"}, "identity": "enforcer", "type": "delete", "timestamp": "2022-07-12T07:08:09Z"});
    let older = json!({"topic": "external.enforcers", "data": event});
    let out = data(&run(older.to_string().into_bytes()).unwrap());
    assert_eq!((out["topic"].as_str(), out["operation"].as_str()), (Some("external.enforcers"), Some("delete")));
    let bare = data(&run(event.to_string().into_bytes()).unwrap());
    assert_eq!(bare["identity"], "enforcer");
    assert!(bare.get("topic").is_none(), "{bare}");
}

#[test]
fn a_publication_marshalled_to_json_by_go_carries_its_data_as_base64() {
    let event = map(vec![
        ("identity", Pack::from("auditreport")),
        ("type", Pack::from("create")),
        ("timestamp", when()),
        ("encoding", Pack::from("application/msgpack")),
        ("entity", Pack::Binary(pack(&map(vec![("syscall", Pack::from("execve"))])))),
    ]);
    let publication = json!({"topic": "external-auditreports", "encoding": "application/msgpack", "data": BASE64.encode(pack(&event))});
    let out = data(&run(publication.to_string().into_bytes()).unwrap());
    assert_eq!((out["identity"].as_str(), out["topic"].as_str()), (Some("auditreport"), Some("external-auditreports")));
    assert_eq!(out["entity"], json!({"syscall": "execve"}));
    let not_base64 = json!({"topic": "t", "data": "%%"});
    assert!(run(not_base64.to_string().into_bytes()).unwrap_err().message.contains("not base64"));
}

#[test]
fn what_is_not_a_publication_is_refused_with_why() {
    for (message, reason) in [
        (vec![0xc1], "the message is not a MessagePack map"),
        (vec![0x92, 0x01], "not MessagePack"),
        // Lengths that claim gigabytes, and nesting a hundred thousand deep: refused, nothing
        // allocated for them and no stack overflow.
        (vec![0xdd, 0xff, 0xff, 0xff, 0xff], "not MessagePack"),
        (vec![0xc6, 0xff, 0xff, 0xff, 0xff, 0x00], "not MessagePack"),
        (vec![0x91; 100_000], "not MessagePack"),
        (pack(&map(vec![("topic", Pack::from("t"))])), "a publication without data"),
        (br#"{"topic": "t", "data": 3}"#.to_vec(), "without an elemental event"),
        (br#"{"identity": "x", "entity": {}}"#.to_vec(), "without `type`"),
        (
            pack(&map(vec![("data", Pack::Binary(vec![0x93])), ("encoding", Pack::from("application/msgpack"))])),
            "not MessagePack",
        ),
    ] {
        let err = run(message).unwrap_err();
        assert!(
            err.message.starts_with("event \"m-1\": ") && err.message.contains(reason),
            "{reason}: {}",
            err.message
        );
        assert!(!err.retryable);
    }
}
