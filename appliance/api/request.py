"""``ApiRequest``: what a route handler receives, without tying plugins to the HTTP library."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from ..errors import BadRequest

#: The largest integer SQLite and DuckDB store (a signed 64-bit integer).
MAX_INT = 2**63 - 1


class ApiRequest:
    def __init__(self, app: Any, method: str, path_params: Mapping[str, str], query: Mapping[str, str],
                 headers: Mapping[str, str], body: bytes):
        self.app = app
        self.method = method
        self.path_params = dict(path_params)
        self.query = dict(query)
        self.headers = headers
        self.body = body

    def json(self) -> Any:
        """The body parsed as JSON; an empty body is ``{}``. Bad JSON is a 400 that says where it broke."""
        if not self.body:
            return {}
        try:
            return json.loads(self.body)
        except UnicodeDecodeError as exc:
            raise BadRequest(f"request body is not UTF-8 ({exc.reason} at byte {exc.start})") from None
        except json.JSONDecodeError as exc:
            raise BadRequest(f"request body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}")\
                from None
        except RecursionError:
            raise BadRequest("request body is nested too deeply") from None

    def json_object(self) -> dict:
        data = self.json()
        if not isinstance(data, dict):
            raise BadRequest(f"request body must be a JSON object, got {type(data).__name__}")
        return data

    def int_query(self, name: str, default: int | None = None, *, minimum: int = 0,
                  maximum: int = MAX_INT) -> int | None:
        """Query parameter ``name`` as an integer within [minimum, maximum]; anything else is a 400 naming it."""
        raw = self.query.get(name)
        if raw is None or raw == "":
            return default
        return parse_int(raw, f"query parameter {name!r}", minimum, maximum)

    def int_param(self, name: str) -> int:
        """Path parameter ``name`` (an id) as a non-negative 64-bit integer; anything else is a 400 naming it."""
        return parse_int(self.path_params.get(name, ""), name, 0, MAX_INT)


def parse_int(raw: str, what: str, minimum: int = 0, maximum: int = MAX_INT) -> int:
    """``raw`` as an integer in [minimum, maximum], else a ``BadRequest`` naming ``what``. Every integer the API
    reads from a URL or header goes through here, so none reaches SQLite or DuckDB beyond their 64 bits."""
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(f"{what} must be an integer, got {raw[:40]!r}") from None
    if not minimum <= value <= maximum:
        shown = raw if len(raw) <= 40 else raw[:37] + "..."
        raise BadRequest(f"{what} must be >= {minimum} and <= {maximum}, got {shown}")
    return value
