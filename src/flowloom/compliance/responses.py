"""Management responses to a report's exceptions, recorded in the ledger.

A response is a ``compliance.response`` event naming an exception id (stable across
runs: `flowloom.compliance.auditmeta`), the response or remediation, and optionally who
owns the remediation and by when. It is a person's own statement, so it carries
authority like an approval: it is written only by ``flowloom report respond`` (signed
with the person's SSH signing key) or the server's route (attested for the signed-in
user), and a report shows only responses whose person is proven; the next report over
the same period shows each exception's latest response beside it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import date
from typing import Any, Final

from flowloom.compliance.history import LedgerView
from flowloom.compliance.model import ResponseRow
from flowloom.errors import InputError
from flowloom.ledger.log import EnvelopeSigner, Ledger

__all__ = ["KIND", "record_response", "responses_of"]

KIND: Final = "compliance.response"
_ID: Final = re.compile(r"^[A-Z0-9]{2,16}-[0-9a-f]{10}(-[0-9]{1,4})?$")
_MAX: Final = 4000


def _valid(exception: str, response: str, owner: str | None, due: str | None) -> None:
    if not _ID.match(exception):
        raise InputError(
            f"{exception!r} is not an exception id",
            hint="ids look like SOX-1a2b3c4d5e; a report lists them beside each exception",
        )
    if not response.strip():
        raise InputError("the response is empty")
    if len(response) > _MAX or (owner is not None and len(owner) > 200):
        raise InputError(f"the response is limited to {_MAX} characters, the owner to 200")
    if due is not None:
        try:
            date.fromisoformat(due)
        except ValueError:
            raise InputError(f"due date {due!r} is not a date", hint="use YYYY-MM-DD") from None
        if len(due) != 10:
            raise InputError(f"due date {due!r} is not a date", hint="use YYYY-MM-DD")


def record_response(
    ledger: Ledger,
    exception: str,
    response: str,
    *,
    actor: Mapping[str, Any],
    owner: str | None = None,
    due: str | None = None,
    sign: EnvelopeSigner | None = None,
) -> int:
    """Append the response (attested; signed by the person with `sign`); its entry."""
    _valid(exception, response, owner, due)
    refs: dict[str, Any] = {"exception": exception, "response": response.strip()}
    if owner:
        refs["owner"] = owner
    if due:
        refs["due"] = due
    prepared = ledger.prepare(
        KIND, meta={"actor": dict(actor), "subject": exception, "refs": refs}, sign=sign
    )
    return ledger.writer.append_many([prepared.entry])[0].index


def responses_of(view: LedgerView) -> tuple[ResponseRow, ...]:
    """Every counted response in the view, in log order (unproven ones are left out)."""
    found: list[ResponseRow] = []
    for entry in view.of(KIND):
        refs = entry.event.refs
        exception, text = refs.get("exception"), refs.get("response")
        if not isinstance(exception, str) or not isinstance(text, str):
            continue
        owner, due = refs.get("owner"), refs.get("due")
        found.append(
            ResponseRow(
                exception=exception,
                response=text,
                by=entry.event.actor.id,
                ts=entry.ts,
                entry=entry.index,
                owner=owner if isinstance(owner, str) else None,
                due=due if isinstance(due, str) else None,
            )
        )
    return tuple(found)
