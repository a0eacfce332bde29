"""token-auth in Python: admits a client whose token is one of a configured list, each with its
account and permissions, as plugins/token-auth (Rust) does.

Config:
- `tokens`: JSON array of {"token": "...", "account": "...", "publish": {...}, "subscribe": {...}}.
  `account` defaults to `default`; a missing permissions object, or a missing `allow`, allows `>`.
Token values never appear in an error or a decision.
"""
import hmac
import json

from componentize_py_types import Err
from wit_world import exports
from wit_world.exports.authorizer import Decision_Allow, Decision_Deny, Grant, Permissions
from wit_world.imports.types import Error

entries = []


def config_error(message):
    return Err(Error(message=f"config: {message}", retryable=False))


def permissions(entry, key, position):
    value = entry.get(key) or {}
    if not isinstance(value, dict):
        raise config_error(f"tokens[{position}].{key} is not an object")
    return Permissions(allow=list(value.get("allow", [">"])), deny=list(value.get("deny", [])))


class Authorizer(exports.Authorizer):
    def init(self, config):
        global entries
        settings = dict(config)
        try:
            tokens = json.loads(settings.get("tokens", "[]"))
        except ValueError as err:
            raise config_error(f"`tokens` is not JSON: {err}")
        if not isinstance(tokens, list) or not tokens:
            raise config_error("`tokens` must be a non-empty JSON array")
        entries = []
        for position, entry in enumerate(tokens):
            token = entry.get("token") if isinstance(entry, dict) else None
            if not isinstance(token, str) or not token:
                raise config_error(f"tokens[{position}] has no token")
            grant = Grant(
                account=entry.get("account", "default"),
                publish=permissions(entry, "publish", position),
                subscribe=permissions(entry, "subscribe", position),
            )
            entries.append((token.encode(), grant))

    def authorize(self, request):
        if request.token is None:
            return Decision_Deny("no token given")
        presented = request.token.encode()
        for token, grant in entries:
            if hmac.compare_digest(presented, token):
                return Decision_Allow(grant)
        return Decision_Deny("unknown token")
