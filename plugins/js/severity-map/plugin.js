// severity-map in JavaScript: the same handler as plugins/severity-map (Rust).
const MAPPING = { Critical: 'Critical', Important: 'Major', Moderate: 'Warning', Low: 'Info' };
// Risk levels by number, 1 to 4 (CCX's `total_risk`).
const BY_NUMBER = [undefined, 'Low', 'Moderate', 'Important', 'Critical'];
const decoder = new TextDecoder();
const encoder = new TextEncoder();
let field = 'severity';
let target = 'severity';

function permanent(message) {
  return { message, retryable: false };
}

function handle(event) {
  // The event stays in the host: fetch only what this reads.
  const id = event.attribute('id');
  let data;
  try {
    data = JSON.parse(decoder.decode(event.data()));
  } catch (err) {
    throw permanent(`event "${id}": data is not JSON: ${err.message}`);
  }
  if (data === null || typeof data !== 'object' || Array.isArray(data)) {
    throw permanent(`event "${id}": data is not a JSON object`);
  }
  if (!(field in data)) throw permanent(`event "${id}": field "${field}" is missing`);
  let level = data[field];
  if (typeof level === 'number') {
    if (!Number.isInteger(level) || level < 1 || level > 4) {
      throw permanent(`event "${id}": field "${field}": unknown level ${JSON.stringify(level)} (expected 1 to 4)`);
    }
    level = BY_NUMBER[level];
  }
  if (typeof level !== 'string') {
    throw permanent(`event "${id}": field "${field}" is ${JSON.stringify(level)}, not a level name or number`);
  }
  if (!Object.hasOwn(MAPPING, level)) {
    throw permanent(`event "${id}": field "${field}": unknown level "${level}" (expected Critical, Important, Moderate or Low)`);
  }
  data[target] = MAPPING[level];
  const sorted = Object.fromEntries(Object.keys(data).sort().map((key) => [key, data[key]]));
  event.setData(encoder.encode(JSON.stringify(sorted)));
  if (event.attribute('datacontenttype') === undefined) event.setAttribute('datacontenttype', 'application/json');
  return { tag: 'keep', val: event };
}

export const eventHandler = {
  init(config) {
    const settings = Object.fromEntries(config);
    for (const key of Object.keys(settings)) {
      if (key !== 'field' && key !== 'target') throw permanent(`config: unknown key \`${key}\` (known: field, target)`);
    }
    field = settings.field ?? 'severity';
    target = settings.target ?? field;
  },
  handle,
  handleBatch(events) {
    return events.map((event) => {
      try {
        return { tag: 'ok', val: handle(event) };
      } catch (err) {
        return { tag: 'err', val: err.message !== undefined && err.retryable !== undefined ? err : permanent(String(err)) };
      }
    });
  },
};
