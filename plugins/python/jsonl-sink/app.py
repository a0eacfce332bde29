"""jsonl-sink in Python: appends every event of a batch as one JSON line to a file in the directory
its config grants (seen as /data), and returns only once the lines are written and flushed.

Config:
- `file`: the file under /data to append to; default `events.jsonl`. No `..`, not absolute.
"""
import json
import os

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import log
from wit_world.imports.types import DeliveryError_Permanent, DeliveryError_Retryable, Error

path = "/data/events.jsonl"


def event_json(event):
    context = event.context
    line = {"subject": event.subject, "id": context.id, "source": context.source, "type": context.type}
    for name in ("subject", "time", "datacontenttype", "dataschema"):
        value = getattr(context, name)
        if value is not None:
            line["ce_subject" if name == "subject" else name] = value
    if event.extensions:
        line["extensions"] = [list(pair) for pair in event.extensions]
    try:
        line["data"] = json.loads(event.data)
    except ValueError:
        line["data_text"] = event.data.decode("utf-8", "replace")
    return line


class EventSink(exports.EventSink):
    def init(self, config):
        global path
        settings = dict(config)
        unknown = sorted(set(settings) - {"file"})
        if unknown:
            raise Err(Error(message=f"config: unknown key `{unknown[0]}` (known: file)", retryable=False))
        name = settings.get("file", "events.jsonl")
        if not name or name.startswith("/") or ".." in name.split("/"):
            raise Err(Error(message=f"config: `file` must be a relative path inside /data, not {name!r}", retryable=False))
        path = "/data/" + name

    def deliver(self, batch):
        lines = "".join(json.dumps(event_json(event), sort_keys=True) + "\n" for event in batch)
        try:
            with open(path, "a", encoding="utf-8") as out:
                out.write(lines)
                out.flush()
        except PermissionError as err:
            raise Err(DeliveryError_Permanent(f"cannot write {path}: {err}"))
        except OSError as err:
            log.log(log.Level.WARN, "write failed", [("file", path), ("error", str(err))])
            raise Err(DeliveryError_Retryable(f"cannot write {path}: {err}"))
