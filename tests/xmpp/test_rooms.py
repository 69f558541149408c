"""The component's room affiliations (transports/xmpp/rooms.py, XEP-0045): roles from
affiliations, owners by creation (§10.1) or configuration, and who may change whom
(§8.2, §9, §10)."""

from __future__ import annotations

from transports.interface import Role
from transports.xmpp.rooms import AdminItem, Affiliations, check_change

ROOM = "room@mls.example.org"
OWNER, ADMIN, MEMBER, PLAIN = (f"xmpp:{n}@example.org" for n in ("o", "a", "m", "p"))


class Store:
    def __init__(self) -> None:
        self.rows: dict[str, dict[str, str]] = {}

    async def room_affiliations(self) -> dict[str, dict[str, str]]:
        return {room: dict(held) for room, held in self.rows.items()}

    async def set_affiliation(self, room: str, identity: str, affiliation: str) -> None:
        held = self.rows.setdefault(room, {})
        if affiliation == "none":
            held.pop(identity, None)
        else:
            held[identity] = affiliation


async def test_creation_configuration_and_roles() -> None:
    store = Store()
    rooms = Affiliations(store, service_admins=["xmpp:root@example.org"])
    assert rooms.created_by(ROOM, OWNER)
    await rooms.save(ROOM, OWNER)
    assert not rooms.created_by(ROOM, PLAIN)  # the room exists: no second creator
    await rooms.set(ROOM, ADMIN, "admin")
    await rooms.set(ROOM, MEMBER, "member")
    assert [rooms.role(ROOM, who) for who in (OWNER, ADMIN, MEMBER, PLAIN)] == [
        Role.ADMIN, Role.MODERATOR, Role.MEMBER, Role.NONE]
    assert rooms.role("other@mls.example.org", "xmpp:root@example.org") == Role.ADMIN
    # configuration decides a configured room's owners; it never gets a creator
    await rooms.configure(ROOM, [PLAIN])
    assert (rooms.of(ROOM, PLAIN), rooms.of(ROOM, OWNER)) == ("owner", "member")
    await rooms.configure("fresh@mls.example.org", [])
    assert not rooms.created_by("fresh@mls.example.org", PLAIN)
    reloaded = Affiliations(store)
    await reloaded.load()
    assert reloaded.rooms == rooms.rooms


async def test_who_may_change_whom() -> None:
    rooms = Affiliations(None)
    for who, held in ((OWNER, "owner"), (ADMIN, "admin"), (MEMBER, "member")):
        await rooms.set(ROOM, who, held)
    ban, kick = AdminItem("outcast"), AdminItem(nick="n")
    assert check_change(rooms, ROOM, MEMBER, ban, PLAIN) == "forbidden"
    assert check_change(rooms, ROOM, PLAIN, kick, MEMBER) == "forbidden"
    assert check_change(rooms, ROOM, ADMIN, ban, MEMBER) == ""
    assert check_change(rooms, ROOM, ADMIN, kick, MEMBER) == ""
    assert check_change(rooms, ROOM, ADMIN, ban, OWNER) == "not-allowed"
    assert check_change(rooms, ROOM, ADMIN, AdminItem("admin"), MEMBER) == "not-allowed"
    assert check_change(rooms, ROOM, OWNER, AdminItem("admin"), MEMBER) == ""
    assert check_change(rooms, ROOM, OWNER, AdminItem("member"), OWNER) == "conflict"
    await rooms.set(ROOM, ADMIN, "owner")
    assert check_change(rooms, ROOM, OWNER, AdminItem("member"), ADMIN) == ""
