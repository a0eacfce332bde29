// token-auth in JavaScript: admits a client whose token is one of a configured list, each with its
// account and permissions, as plugins/token-auth (Rust) does.
//
// Config: `tokens`, a JSON array of {"token": "...", "account": "...", "publish": {...}, "subscribe": {...}};
// `account` defaults to `default`; a missing permissions object, or a missing `allow`, allows `>`.
// Token values never appear in an error or a decision.
let entries = [];

function configError(message) {
  return { message: `config: ${message}`, retryable: false };
}

function permissions(entry, key, position) {
  const value = entry[key] ?? {};
  if (typeof value !== 'object' || Array.isArray(value)) throw configError(`tokens[${position}].${key} is not an object`);
  return { allow: value.allow ?? ['>'], deny: value.deny ?? [] };
}

export const authorizer = {
  init(config) {
    let tokens;
    try {
      tokens = JSON.parse(Object.fromEntries(config).tokens ?? '[]');
    } catch (err) {
      throw configError(`\`tokens\` is not JSON: ${err.message}`);
    }
    if (!Array.isArray(tokens) || tokens.length === 0) throw configError('`tokens` must be a non-empty JSON array');
    entries = tokens.map((entry, position) => {
      if (typeof entry?.token !== 'string' || entry.token === '') throw configError(`tokens[${position}] has no token`);
      const grant = {
        account: entry.account ?? 'default',
        publish: permissions(entry, 'publish', position),
        subscribe: permissions(entry, 'subscribe', position),
      };
      return [entry.token, grant];
    });
  },
  authorize(request) {
    if (request.token === undefined) return { tag: 'deny', val: 'no token given' };
    // Compare with every token, each in time that depends only on the presented token's length.
    let found;
    for (const [token, grant] of entries) {
      let differ = token.length !== request.token.length ? 1 : 0;
      for (let i = 0; i < request.token.length; i++) differ |= request.token.charCodeAt(i) ^ token.charCodeAt(i % token.length);
      if (differ === 0 && found === undefined) found = grant;
    }
    return found === undefined ? { tag: 'deny', val: 'unknown token' } : { tag: 'allow', val: found };
  },
};
