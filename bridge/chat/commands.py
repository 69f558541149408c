"""The input line's commands: parsing and what each does, for the chat screen.

A line that does not start with ``/`` is a message to the current room. Every command
either does what it says or raises :class:`bridge.chat.client.CommandError` with the
reason (an unknown room, a user without KeyPackage, a file over the limit...), having
changed nothing.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from bridge.chat import messages
from bridge.chat.client import RELAY_BANNER, WAITING, ChatClient, CommandError, Room
from bridge.chat.membership import short
from bridge.member import group_safety_number, member_list

HELP = """\
/join ROOM         join a room by its address (external join, or wait for a Welcome)
/create ROOM       create a room with a new MLS group
/room ROOM         switch to a room (also: click it, ctrl+n / ctrl+p)
/add USER          add a user (alice@example.org or @alice:example.org)
/remove USER       remove every device of a user
/leave             leave the current room
/members           members, their network identity and key fingerprint
/safety            the group's safety number (compare it with the others)
/info              members, safety number, relay state, credential mode
/reply N TEXT      reply to message N
/edit N TEXT       replace the text of your message N
/retract N         retract your message N
/react N EMOJI     react to message N (again: take it back)
/file PATH         send a file, end-to-end encrypted
/save N [PATH]     decrypt and save the file of message N
/help              this list
/quit              leave the program (your rooms stay joined)"""


@dataclass
class Context:
    """What a command acts on: the chat, the current room, how to say things."""

    chat: ChatClient
    room: Room | None
    say: Callable[[str], None]
    select: Callable[[Room], None]
    quit: Callable[[], None]

    def current(self) -> Room:
        if self.room is None:
            raise CommandError("no room selected: /join or /create one first")
        return self.room


Handler = Callable[[Context, str], Awaitable[None]]


def _number(text: str) -> tuple[int, str]:
    head, _, rest = text.strip().partition(" ")
    if not head.isdigit():
        raise CommandError(f"expected a message number, got {head!r}")
    return int(head), rest.strip()


def _needs(args: str, usage: str) -> str:
    if not args.strip():
        raise CommandError(f"usage: {usage}")
    return args.strip()


async def _join(ctx: Context, args: str) -> None:
    room = await ctx.chat.join(_needs(args, "/join ROOM"))
    if room is not None:
        ctx.select(room)


async def _create(ctx: Context, args: str) -> None:
    ctx.select(await ctx.chat.create(_needs(args, "/create ROOM")))


async def _room(ctx: Context, args: str) -> None:
    ctx.select(ctx.chat.room(_needs(args, "/room ROOM")))


async def _add(ctx: Context, args: str) -> None:
    await ctx.chat.add(ctx.current(), _needs(args, "/add USER"))


async def _remove(ctx: Context, args: str) -> None:
    await ctx.chat.remove(ctx.current(), _needs(args, "/remove USER"))


async def _leave(ctx: Context, args: str) -> None:
    await ctx.chat.leave(ctx.current())


async def _members(ctx: Context, args: str) -> None:
    room = ctx.current()
    group = ctx.chat.member.group(room.group_id)
    if not group.active:
        raise CommandError(f"you are no longer a member of {room.name}")
    people = member_list(group, ctx.chat.member.trust.anchor)
    ctx.say(f"{len(people)} members of {room.name} (epoch {group.epoch}):")
    for person in people:
        you = " (you)" if person.own else ""
        ctx.say(f"  {short(person.identity)}{you}, leaf {person.leaf}")
        ctx.say(f"      key {person.fingerprint}")


async def _safety(ctx: Context, args: str) -> None:
    room = ctx.current()
    group = ctx.chat.member.group(room.group_id)
    if not group.active:
        raise CommandError(f"you are no longer a member of {room.name}")
    ctx.say(f"safety number of {room.name} at epoch {group.epoch}:")
    ctx.say(f"      {group_safety_number(group)}")
    ctx.say("compare it with the others out of band: equal numbers mean you all see "
            "the same group (it changes with every membership change)")


async def _info(ctx: Context, args: str) -> None:
    """Members, safety number, relay state and credential mode, at once."""
    await _members(ctx, args)
    await _safety(ctx, args)
    room = ctx.current()
    ctx.say(RELAY_BANNER if room.relayed else "end-to-end encrypted: the bridge does not "
                                              "relay this room")
    mode = ctx.chat.member.credential_mode(room.group_id)
    ctx.say(f"credential mode: {mode} ({mode.label})")


async def _reply(ctx: Context, args: str) -> None:
    number, rest = _number(_needs(args, "/reply N TEXT"))
    await messages.text(ctx.chat, ctx.current(), _needs(rest, "/reply N TEXT"), number)


async def _edit(ctx: Context, args: str) -> None:
    number, rest = _number(_needs(args, "/edit N TEXT"))
    await messages.edit(ctx.chat, ctx.current(), number, rest)


async def _retract(ctx: Context, args: str) -> None:
    number, _ = _number(_needs(args, "/retract N"))
    await messages.retract(ctx.chat, ctx.current(), number)


async def _react(ctx: Context, args: str) -> None:
    number, rest = _number(_needs(args, "/react N EMOJI"))
    await messages.react(ctx.chat, ctx.current(), number, _needs(rest, "/react N EMOJI"))


async def _file(ctx: Context, args: str) -> None:
    await messages.send_path(ctx.chat, ctx.current(), _needs(args, "/file PATH"))


async def _save(ctx: Context, args: str) -> None:
    number, rest = _number(_needs(args, "/save N [PATH]"))
    path = await messages.save(ctx.chat, ctx.current(), number, rest)
    ctx.say(f"saved to {path}")


async def _help(ctx: Context, args: str) -> None:
    for line in HELP.splitlines():
        ctx.say(line)
    if ctx.chat.waiting:
        ctx.say(f"{WAITING}: {', '.join(ctx.chat.waiting.values())}")


async def _quit(ctx: Context, args: str) -> None:
    ctx.quit()


COMMANDS: dict[str, Handler] = {
    "join": _join, "create": _create, "room": _room, "add": _add, "remove": _remove,
    "leave": _leave, "members": _members, "safety": _safety, "info": _info, "reply": _reply,
    "edit": _edit, "retract": _retract, "react": _react, "file": _file, "save": _save,
    "help": _help, "quit": _quit,
}


async def run(ctx: Context, line: str) -> None:
    """Do what ``line`` says (CommandError if it cannot be done)."""
    line = line.strip()
    if not line:
        return
    if not line.startswith("/") or line.startswith("//"):
        await messages.text(ctx.chat, ctx.current(), line.removeprefix("/"))
        return
    name, _, args = line[1:].partition(" ")
    handler = COMMANDS.get(name.lower())
    if handler is None:
        raise CommandError(f"unknown command /{name}: /help lists them")
    await handler(ctx, args)
