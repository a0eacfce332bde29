"""Reads a Kafka topic with PyPI's confluent-kafka, an independent client, and prints JSON.

    kafka_py.py BOOTSTRAP consume TOPIC COUNT [TIMEOUT_S]

Reads every partition of TOPIC from the beginning (assigned, not through a consumer group) until
COUNT records arrived or TIMEOUT_S (default 30) passed, then half a second more, so records beyond
COUNT (duplicates) show too. Prints a list of {partition, offset, key, value, headers}; keys,
values and header values as UTF-8 text (invalid bytes replaced).
"""

import json
import sys
import time

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition


def text(raw):
    return None if raw is None else raw.decode("utf-8", errors="replace")


def consume(bootstrap, topic, count, timeout):
    consumer = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": "eventyard-tests",
        "enable.auto.commit": False,
        "api.version.request": True,
    })
    partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
    records, deadline, settle = [], time.monotonic() + timeout, None
    while time.monotonic() < (settle or deadline):
        message = consumer.poll(0.1)
        if message is None:
            continue
        if message.error():
            raise SystemExit(f"kafka: {message.error()}")
        records.append({
            "partition": message.partition(),
            "offset": message.offset(),
            "key": text(message.key()),
            "value": text(message.value()),
            "headers": {name: text(value) for name, value in (message.headers() or [])},
        })
        if len(records) >= count and settle is None:
            settle = time.monotonic() + 0.5
    consumer.close()
    return records


def main():
    bootstrap, command = sys.argv[1], sys.argv[2]
    if command != "consume":
        raise SystemExit(f"unknown command {command}")
    topic, count = sys.argv[3], int(sys.argv[4])
    timeout = float(sys.argv[5]) if len(sys.argv) > 5 else 30.0
    print(json.dumps(consume(bootstrap, topic, count, timeout)))


if __name__ == "__main__":
    main()
