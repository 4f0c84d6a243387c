"""Canonical identities: the spellings that dodged segregation of duties all collapse."""

from __future__ import annotations

import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flowloom.ledger.identity import canonical_identity, names_match

VARIANTS = [
    "a@x.org",
    "a@x.org.",
    "a@x.org..",
    "mailto:a@x.org",
    "MAILTO:a@x.org",
    " a@x.org",
    "a@x.org\n",
    "a @x.org",
    "a@ x . org",
    "A@X.ORG",
    "\uff41@x.org",  # full-width a
    "\uff41\uff20\uff58\uff0e\uff4f\uff52\uff47",  # all full-width
    "a\u200b@x.org",  # zero-width space
    "a\u00a0@x.org",  # no-break space
    "\u202ea@x.org",  # right-to-left override
    "<a@x.org>",
    "Ann Author <a@x.org>",
    "<mailto:A@X.org.>",
    "mailto:<a@x.org>",
]


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_spelling_of_an_address_is_the_same_identity(variant: str) -> None:
    assert canonical_identity(variant) == "a@x.org"
    assert names_match(variant, "a@x.org")
    assert names_match("A@X.org.", variant)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("a@x.org", "b@x.org"),
        ("a@x.org", "a@x.com"),
        ("a@x.org", "aa@x.org"),
        ("a@x.org", "a@x.org.uk"),
        ("ann@x.org", "Ann <bob@x.org>"),
    ],
)
def test_different_people_do_not_match(a: str, b: str) -> None:
    assert not names_match(a, b)
    assert canonical_identity(a) != canonical_identity(b)


@pytest.mark.parametrize("empty", ["", " ", "mailto:", "<>", "...", "\u200b"])
def test_an_empty_identity_names_no_one(empty: str) -> None:
    assert canonical_identity(empty) == ""
    assert not names_match(empty, empty)
    assert not names_match(empty, "a@x.org")


# -- properties --------------------------------------------------------------------------

_ATOM = st.text(alphabet=string.ascii_lowercase + string.digits + "_-+", min_size=1, max_size=12)
_ADDRESS = st.builds(
    lambda local, labels: f"{local}@{'.'.join(labels)}",
    _ATOM,
    st.lists(
        st.text(alphabet=string.ascii_lowercase + string.digits, min_size=1, max_size=8),
        min_size=1,
        max_size=3,
    ),
)


def _full_width(text: str, mask: list[bool]) -> str:
    return "".join(
        chr(ord(ch) + 0xFEE0) if flag and "!" <= ch <= "~" else ch
        for ch, flag in zip(text, mask + [False] * len(text), strict=False)
    )


@st.composite
def _disguised(draw: st.DrawFn) -> tuple[str, str]:
    """An address and the same address dressed up the ways people (and attackers) write it."""
    address = draw(_ADDRESS)
    text = "".join(ch.upper() if draw(st.booleans()) else ch for ch in address)
    text = _full_width(text, draw(st.lists(st.booleans(), max_size=len(text))))
    spaced = []
    for ch in text:
        spaced.append(ch)
        spaced.append(draw(st.sampled_from(["", "", " ", "\t", "\u200b", "\u00a0", "\u3000"])))
    text = "".join(spaced) + "." * draw(st.integers(0, 3))
    if draw(st.booleans()):
        text = draw(st.sampled_from(["mailto:", "MailTo:", "mailto: "])) + text
    if draw(st.booleans()):
        text = f"<{text}>"
        if draw(st.booleans()):
            text = "Some Name " + text
    return address, text


@given(_disguised())
def test_a_disguised_address_is_its_plain_self(pair: tuple[str, str]) -> None:
    address, disguised = pair
    assert canonical_identity(disguised) == address
    assert names_match(disguised, address)


@given(_ADDRESS, _ADDRESS)
def test_distinct_addresses_stay_distinct(a: str, b: str) -> None:
    assert names_match(a, b) == (a == b)


@given(st.text())
def test_canonical_identity_is_idempotent_and_has_no_blanks(text: str) -> None:
    once = canonical_identity(text)
    assert canonical_identity(once) == once
    assert not any(ch.isspace() for ch in once)
    assert not once.endswith(".")
    assert not once.startswith("mailto:")


@given(st.text(), st.text())
def test_names_match_is_symmetric(a: str, b: str) -> None:
    assert names_match(a, b) == names_match(b, a)
