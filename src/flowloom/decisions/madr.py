"""MADR export: a decision record as a Markdown Architectural Decision Record (MADR 4).

The layout follows MADR 4.0 (https://adr.github.io/madr/): YAML front matter with
``status``, ``date``, ``decision-makers``, ``consulted`` and ``informed``, then the
title, Context and Problem Statement, Considered Options, Decision Outcome with its
Consequences and Confirmation, and More Information, which names the ledger entries
(decision record, prompt, reply, approvals, linked commits) so a reader can prove each
with ``flowloom log prove INDEX``.
"""

from __future__ import annotations

from collections.abc import Sequence

from flowloom.decisions.records import Decision

__all__ = ["to_madr"]


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _yaml_text(text: str) -> str:
    """A YAML double-quoted scalar (always quoted: names may hold ':' or '#')."""
    escaped = _one_line(text).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def _yaml_list(items: Sequence[str]) -> str:
    return "[" + ", ".join(_yaml_text(i) for i in items) + "]" if items else "[]"


def _code(text: str) -> str:
    fence = "``" if "`" in text else "`"
    return f"{fence}{text}{fence}"


def _entry(index: int | None, origin: str, link_base: str | None) -> str:
    if index is None:
        return "not recorded"
    if link_base:
        return f"[entry {index}]({link_base.rstrip('/')}/entries/{index}) of `{origin}`"
    return f"entry {index} of `{origin}` (`flowloom log prove {index}`)"


def to_madr(
    decision: Decision,
    *,
    origin: str,
    commits: Sequence[tuple[int, str]] = (),
    link_base: str | None = None,
) -> str:
    """The decision as MADR 4 Markdown.

    `commits` are the (entry, sha) of its ``commit.link`` events; `link_base`, when
    given (a FlowLoom server URL), turns entry references into links.
    """
    approvers = [a.approver for a in decision.approvals if a.counts]
    reviewers = [
        a.approver
        for a in decision.approvals
        if a.meaning == "reviewed" and a.matches and a.verified
    ]
    makers = list(dict.fromkeys([decision.requested_by, *approvers]))
    lines = [
        "---",
        f"status: {decision.status}",
        f"date: {decision.created[:10]}",
        f"decision-makers: {_yaml_list([m for m in makers if m])}",
        f"consulted: {_yaml_list(list(dict.fromkeys(reviewers)))}",
        "informed: []",
        f"flowloom-decision: {decision.id}",
        "---",
        "",
        f"# {_one_line(decision.title)}",
        "",
        "## Context and Problem Statement",
        "",
        decision.context.strip() or "No context was recorded.",
        "",
    ]
    if decision.tickets:
        lines += [f"Tickets: {', '.join(decision.tickets)}.", ""]

    options = list(decision.options)
    if decision.choice and not any(_one_line(o) == _one_line(decision.choice) for o in options):
        options.append(decision.choice)
    lines += ["## Considered Options", ""]
    lines += [f"* {_one_line(o)}" for o in options] or ["No options were recorded."]
    lines += ["", "## Decision Outcome", ""]
    if decision.choice:
        outcome = f'Chosen option: "{_one_line(decision.choice)}"'
        rationale = decision.rationale.strip()
        if rationale and rationale[-1] not in ".!?":
            rationale += "."
        lines.append(f"{outcome}, because {rationale}" if rationale else f"{outcome}.")
    else:
        lines.append("No option was recorded as chosen.")
        if decision.rationale:
            lines += ["", decision.rationale.strip()]

    lines += ["", "### Consequences", ""]
    lines.append(f"* Risk assessed as {decision.risk}.")
    if decision.files:
        lines.append(f"* Changes {', '.join(_code(f) for f in decision.files)}.")
    if commits:
        shas = ", ".join(_code(sha[:12]) for _, sha in commits)
        lines.append(f"* Implemented in commit{'s' if len(commits) > 1 else ''} {shas}.")

    lines += ["", "### Confirmation", ""]
    if decision.approvals:
        for approval in decision.approvals:
            stale = "" if approval.matches else " (of different content: not valid for this record)"
            if not approval.verified:
                stale += f" (unverified, does not count: {approval.unverified_reason})"
            lines.append(
                f"* {approval.describe().capitalize()} on "
                f"{approval.ts[:10]}, {_entry(approval.entry, origin, link_base)}{stale}."
            )
    else:
        lines.append("* Not yet approved (`flowloom decision approve " + decision.id + "`).")

    lines += ["", "## More Information", ""]
    lines.append(
        f"Recorded in the FlowLoom ledger `{origin}` as decision {decision.id} on "
        f"{decision.created} (content digest `{decision.content_digest}`)."
    )
    lines.append("")
    lines.append(f"* Decision record: {_entry(decision.entry, origin, link_base)}")
    lines.append(f"* Requested by: {decision.requested_by or 'not recorded'}")
    if decision.session:
        lines.append(f"* Session: {_code(decision.session)}")
    if decision.model:
        lines.append(f"* Model: {decision.model}")
    if decision.prompt_entry is not None:
        lines.append(f"* Prompt: {_entry(decision.prompt_entry, origin, link_base)}")
    if decision.response_entry is not None:
        lines.append(f"* AI reply: {_entry(decision.response_entry, origin, link_base)}")
    for index, sha in commits:
        lines.append(f"* Commit {_code(sha)}: linked at {_entry(index, origin, link_base)}")
    return "\n".join(lines) + "\n"
