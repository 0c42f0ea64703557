"""gunicorn: an empty Expect header asks for nothing, so it gets no 417.

RFC 9110 defines Expect as a list (section 10.1.1, `Expect = #expectation`)
whose empty members a recipient ignores (section 5.6.1.2): `Expect:` with
nothing after it expects nothing. Orthanc's own test tooling sends it on every
POST and PUT. gunicorn 27 compares the whole value with "100-continue" and
raises ExpectationFailed (417) for anything else, the empty value included,
before the application sees the request (`gunicorn/http/message.py`,
`HeaderPolicy._apply_header_policy`); no setting turns that off. The 417 for
unknown expectations came from benoitc/gunicorn#3374 ("unexpected
informational 1xx responses"); no upstream issue about the empty value was
found.

The patch drops empty members before gunicorn's own check, and the header
itself when nothing is left. `100-continue` and every non-empty expectation go
through gunicorn's code unchanged. Installed by gunicorn's `post_worker_init`
hook only (`gunicorn.conf.py`); if the method it wraps is gone or has changed
shape, the worker refuses to boot and gunicorn halts, rather than quietly
answering 417 again.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any

from gunicorn.http import message

# The signature the wrapper was written against (gunicorn 27.0).
WRAPPED_PARAMETERS = [
    "self",
    "name",
    "value",
    "scheme_state",
    "seen",
    "secure_scheme_headers",
    "forwarder_headers",
    "from_trailer",
]
MARK = "_pacsportal_ignores_empty_expect"


def expectations(value: str) -> list[str]:
    """The members of an Expect field value, without the empty ones."""
    return [member.strip(" \t") for member in value.split(",") if member.strip(" \t")]


def install() -> None:
    policy = getattr(message, "HeaderPolicy", None)
    original = getattr(policy, "_apply_header_policy", None)
    if getattr(original, MARK, False):
        return
    # Tested apart: inside the condition, `is original` would narrow `original` to Any | None for mypy.
    inherited = getattr(getattr(message, "Request", None), "_apply_header_policy", None) is original
    if (
        policy is None
        or not callable(original)
        or list(inspect.signature(original).parameters) != WRAPPED_PARAMETERS
        or not inherited
    ):
        raise RuntimeError(
            "gunicorn.http.message.HeaderPolicy._apply_header_policy is gone or has changed in this "
            "gunicorn: check whether an empty Expect header still gets 417, then remove or adapt "
            "pacsportal/gunicorn_expect.py"
        )

    @functools.wraps(original)
    def apply_header_policy(
        self: Any,
        name: str,
        value: str,
        scheme_state: list[bool],
        seen: set[str],
        secure_scheme_headers: dict[str, str],
        forwarder_headers: list[str],
        from_trailer: bool = False,
    ) -> tuple[str, str] | None:
        if name == "EXPECT" and not from_trailer:
            members = expectations(value)
            if not members:
                return None  # dropped, as the method's contract allows: the request expects nothing
            value = ", ".join(members)
        return original(
            self, name, value, scheme_state, seen, secure_scheme_headers, forwarder_headers, from_trailer
        )

    setattr(apply_header_policy, MARK, True)
    policy._apply_header_policy = apply_header_policy
