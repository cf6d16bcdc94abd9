"""What the client raises. Anything that is normd's trouble (overload, not
ready, deadline, connection) never becomes an exception: it becomes a call of
the app's fallback. These are what is left."""
from __future__ import annotations

from typing import Any, List, Optional


class NormdError(Exception):
    """normd answered with a contract error (400, 404, 405, 413, 415, 422): the
    request or the data is wrong, and the in-app path would either fail the
    same way or accept what normd refused, so the caller gets the problem."""

    def __init__(self, status: int, code: str, problem: dict,
                 errors: Optional[List[dict]] = None, request_id: Optional[str] = None) -> None:
        detail = problem.get("detail") or problem.get("title") or "normd rejected the request"
        super().__init__(f"normd {status} {code}: {detail}")
        self.status = status
        self.code = code
        self.problem = problem
        self.errors = errors
        self.request_id = request_id

    @classmethod
    def from_problem(cls, status: int, problem: dict, request_id: Optional[str]) -> "NormdError":
        code = problem.get("code")
        errors = problem.get("errors")
        return cls(status, code if isinstance(code, str) else f"http_{status}", problem,
                   errors if isinstance(errors, list) else None, request_id)


class NormdUnavailable(Exception):
    """normd was not used (for `reason`) and there is no fallback function to
    answer with instead."""

    def __init__(self, reason: str, cause: Optional[BaseException] = None) -> None:
        super().__init__(f"normd not used ({reason}) and no fallback function configured")
        self.reason = reason
        self.__cause__ = cause


class NormdClosed(RuntimeError):
    """norm() after close()."""

    def __init__(self) -> None:
        super().__init__("normd client is closed")


def _as_problem(body: bytes, status: int) -> dict:
    """A problem+json body, or a minimal problem for anything unparsable."""
    import json
    try:
        doc: Any = json.loads(body.decode("utf-8"))
        if isinstance(doc, dict):
            return doc
    except (ValueError, UnicodeDecodeError):
        pass
    return {"status": status, "title": f"HTTP {status}",
            "detail": body[:200].decode("utf-8", "replace")}
