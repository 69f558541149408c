"""Occupant nicknames in the component's rooms: no two people under one name.

In a MUC room a nickname is what others see as the sender (``room/nick``), so the
component refuses an entry or a nick change (XEP-0045 §7.2.9, §7.6) with a
``<conflict/>`` error when the nickname, folded (:func:`fold`), equals

* the nickname of another occupant (a different bare JID), or
* a name the room *reserves* (:class:`Reservation`): in a relayed room the bridge
  re-emits the group's messages under names of its own, and an occupant who could take
  one of them would speak as that member. The relay reserves the names members are
  shown under, each for its owner (who may use it), and marks (``(relayed)``,
  ``(MLS)``) that no occupant's nickname may end with: the bridge's own senders carry
  them, so they never collide with an occupant.

The MLS client marker in a join presence is self-declared, so it exempts nobody.

Folding catches the usual confusions: Unicode compatibility forms (NFKC), case
(``casefold``), combining marks, invisible format characters and white space, the
Cyrillic and Greek letters that look like Latin ones, and ``0``/``o``, ``1``/``l``/``i``.
It is a skeleton in the spirit of Unicode TR39, not its full confusables table (which
the project does not ship): rarer homoglyphs stay distinct.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from slixmpp import JID

from transports.xmpp import namespace as ns

NO_OWNER = ""  # a reserved name nobody may take

# Letters that look like others (after casefold), to one representative each: the
# Cyrillic and Greek look-alikes of Latin letters, and digits that pass for letters.
_LOOKALIKES = str.maketrans({
    "\u0430": "a", "\u0435": "e", "\u043e": "o", "\u0440": "p", "\u0441": "c",
    "\u0443": "y", "\u0445": "x", "\u0455": "s", "\u0456": "l", "\u0458": "j",
    "\u0501": "d", "\u04bb": "h", "\u0432": "b", "\u043a": "k", "\u043c": "m",
    "\u043d": "h", "\u0442": "t", "\u03bf": "o", "\u03b1": "a", "\u03b9": "l",
    "\u03ba": "k", "\u03bd": "v", "\u03c1": "p", "\u03c4": "t", "\u03c5": "u",
    "\u03c7": "x", "\u0131": "l", "0": "o", "1": "l", "i": "l", "|": "l",
})


def fold(nick: str) -> str:
    """The form nicknames are compared in (see the module docstring)."""
    decomposed = unicodedata.normalize("NFKD", nick)
    kept = "".join(c for c in decomposed
                   if unicodedata.category(c) not in ("Mn", "Me", "Cf", "Zs", "Cc")
                   and not c.isspace())
    return unicodedata.normalize("NFKC", kept.casefold()).translate(_LOOKALIKES)


@dataclass(frozen=True, slots=True)
class Reservation:
    """The names a room keeps for their owners, and the marks no nickname ends with.

    ``names`` maps a name to the identity URI that may use it (:data:`NO_OWNER`:
    nobody)."""

    names: Mapping[str, str] = field(default_factory=dict)
    marks: tuple[str, ...] = ()


class Reserver(Protocol):
    """Who reserves names in a room (the bridge's relay, for the rooms it relays)."""

    def reserved(self, room: str) -> Reservation: ...


def refusal(occupants: Mapping[str, str], occupant: str, nick: str,
            reservation: Reservation) -> str:
    """Why ``occupant`` (a full JID) may not be ``nick`` in a room with ``occupants``
    (full JID -> nick), or "" if it may."""
    folded = fold(nick)
    if not folded:
        return "a nickname needs a visible character"
    bare = JID(occupant).bare
    for other, taken in occupants.items():
        if JID(other).bare != bare and fold(taken) == folded:
            return "that nickname is in use by another occupant"
    identity = ns.URI_SCHEME + bare
    for name, owner in reservation.names.items():
        if fold(name) == folded and owner != identity:
            return "that nickname is reserved for a member of the group"
    for mark in reservation.marks:
        if folded.endswith(fold(mark)):
            return f"nicknames ending in {mark.strip()!r} are the bridge's own"
    return ""


__all__ = ["NO_OWNER", "Reservation", "Reserver", "fold", "refusal"]
