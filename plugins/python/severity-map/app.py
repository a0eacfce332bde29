"""severity-map in Python: the same handler as plugins/severity-map (Rust)."""
import json

from componentize_py_types import Err, Ok
from wit_world import exports
from wit_world.exports.event_handler import Outcome_Keep
from wit_world.imports.types import Error

MAPPING = {"Critical": "Critical", "Important": "Major", "Moderate": "Warning", "Low": "Info"}
# Risk levels by number, 1 to 4 (CCX's `total_risk`).
BY_NUMBER = {1: "Low", 2: "Moderate", 3: "Important", 4: "Critical"}

field = "severity"
target = "severity"


def permanent(message):
    return Err(Error(message=message, retryable=False))


class EventHandler(exports.EventHandler):
    def init(self, config):
        global field, target
        settings = dict(config)
        unknown = sorted(set(settings) - {"field", "target"})
        if unknown:
            raise permanent(f"config: unknown key `{unknown[0]}` (known: field, target)")
        field = settings.get("field", "severity")
        target = settings.get("target", field)

    def handle(self, event):
        # The event stays in the host: fetch only what this reads.
        event_id = event.attribute("id")
        try:
            data = json.loads(event.data())
        except ValueError as err:
            raise permanent(f'event "{event_id}": data is not JSON: {err}')
        if not isinstance(data, dict):
            raise permanent(f'event "{event_id}": data is not a JSON object')
        if field not in data:
            raise permanent(f'event "{event_id}": field "{field}" is missing')
        level = data[field]
        if isinstance(level, (int, float)) and not isinstance(level, bool):
            if level not in BY_NUMBER:
                raise permanent(f'event "{event_id}": field "{field}": unknown level {json.dumps(level)} (expected 1 to 4)')
            level = BY_NUMBER[level]
        if not isinstance(level, str):
            raise permanent(f'event "{event_id}": field "{field}" is {json.dumps(level)}, not a level name or number')
        if level not in MAPPING:
            raise permanent(
                f'event "{event_id}": field "{field}": unknown level "{level}"'
                " (expected Critical, Important, Moderate or Low)"
            )
        data[target] = MAPPING[level]
        event.set_data(json.dumps(data, sort_keys=True, separators=(",", ":")).encode())
        if event.attribute("datacontenttype") is None:
            event.set_attribute("datacontenttype", "application/json")
        return Outcome_Keep(event)

    def handle_batch(self, events):
        results = []
        for event in events:
            try:
                results.append(Ok(self.handle(event)))
            except Err as err:
                results.append(err)
        return results
