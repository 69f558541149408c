"""Fixtures for the chat client's tests: ONE bridge (the same BridgeService that
``mls-bridge run`` serves) on real Prosody -- with its XEP-0363 upload service -- and
real Synapse, and chat clients on both networks, each with its own device store.

``chat_accounts`` makes accounts and :class:`ChatClient` s for them; a client can be
made again over the same store (a restart). :func:`screen` reads what the Textual app
shows; :func:`submit` types a line into its input and presses Enter.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from textual.widgets import Input, Label, ListView, RichLog, Static

from benchmarks.bridge_run import until
from bridge.app.services.bridge import BridgeService
from bridge.chat.app import ChatApp
from bridge.chat.client import ChatClient, Room
from bridge.chat.matrix_session import MatrixSession
from bridge.chat.xmpp_session import XmppSession
from bridge.devservers.synapse import SynapseServer
from bridge.member import SqliteMemberStore
from tests.bridging.conftest import bridge_service
from tests.xmpp.conftest import UploadProsody, upload_prosody

__all__ = ["bridge_service", "upload_prosody"]  # fixtures used here

TIMEOUT = 45.0


@pytest.fixture(scope="session")
def prosody_server(upload_prosody: UploadProsody) -> UploadProsody:
    """The chat tests' Prosody is the one with an upload service (for files)."""
    return upload_prosody


@pytest.fixture
def bridge(bridge_service: BridgeService) -> BridgeService:
    return bridge_service


@dataclass
class Account:
    """One account on one network and its device's store file."""

    network: str
    address: str
    password: str
    store_path: Path


class Accounts:
    """Makes accounts and chat clients; closes what it opened."""

    def __init__(self, prosody: UploadProsody, synapse: SynapseServer, bridge: BridgeService,
                 tmp: Path) -> None:
        self.prosody, self.synapse, self.bridge, self.tmp = prosody, synapse, bridge, tmp
        self.open: list[tuple[ChatClient, SqliteMemberStore]] = []

    def new(self, network: str, prefix: str) -> Account:
        if network == "xmpp":
            address, password = self.prosody.new_user(prefix)
        else:
            address, password = self.synapse.new_user(prefix)
        return Account(network, address, password, self.tmp / f"{prefix}.sqlite3")

    def new_device(self, account: Account, name: str) -> Account:
        """The same account on another device (its own store: another MLS leaf)."""
        return Account(account.network, account.address, account.password,
                       self.tmp / f"{name}.sqlite3")

    async def client(self, account: Account) -> ChatClient:
        """A chat client (not started) over the account's device store."""
        store = await SqliteMemberStore.open(account.store_path)
        device = await store.load("chat:device") or b"dev" + account.store_path.stem.encode()
        await store.save("chat:device", device)
        if account.network == "xmpp":
            session: Any = XmppSession(
                account.address, account.password, resource=f"chat-{device.decode()}",
                hub=self.prosody.component_name, host=self.prosody.host,
                port=self.prosody.c2s_port, cafile=str(self.prosody.cafile))
        else:
            assert self.bridge.bot is not None
            session = MatrixSession(account.address, account.password,
                                    homeserver=self.synapse.url,
                                    hub_user=self.bridge.bot.user_id)
        chat = ChatClient(session, store, device=device.decode())
        self.open.append((chat, store))
        return chat

    async def started(self, account: Account) -> ChatClient:
        chat = await self.client(account)
        await chat.start()
        return chat

    async def close(self, chat: ChatClient) -> None:
        for entry in [e for e in self.open if e[0] is chat]:
            self.open.remove(entry)
            await chat.stop()
            await entry[1].close()


@pytest.fixture
async def accounts(upload_prosody: UploadProsody, synapse_server: SynapseServer,
                   bridge: BridgeService, tmp_path: Path) -> AsyncIterator[Accounts]:
    made = Accounts(upload_prosody, synapse_server, bridge, tmp_path)
    try:
        yield made
    finally:
        for chat, store in list(made.open):
            try:
                await chat.stop()
            finally:
                await store.close()


def screen(app: ChatApp) -> str:
    """Everything the app shows as text: status, rooms, banner, timeline."""
    parts = [str(app.query_one("#status", Static).content)]
    rooms = app.query_one("#rooms", ListView)
    parts += [str(label.content) for label in rooms.query(Label)]
    parts.append(str(app.query_one("#banner", Static).content))
    parts += [strip.text for strip in app.query_one("#timeline", RichLog).lines]
    return "\n".join(parts)


async def submit(pilot: Any, line: str) -> None:
    """Type ``line`` into the input and press Enter."""
    field = pilot.app.query_one("#input", Input)
    field.value = line
    await pilot.press("enter")
    await pilot.pause()


async def shows(app: ChatApp, text: str, timeout: float = TIMEOUT) -> str:
    """Wait until ``text`` is on the screen; the screen."""
    try:
        return str(await until(lambda: (lambda s: s if text in s else "")(screen(app)),
                               f"{text!r} on the screen", timeout))
    except AssertionError as exc:
        raise AssertionError(f"{exc}; the screen:\n{screen(app)}") from None


def only_room(chat: ChatClient) -> Room:
    (room,) = chat.rooms.values()
    return room


def bodies(chat: ChatClient) -> list[str]:
    """The text of every message in the client's only room."""
    return [m.body or "" for m in only_room(chat).timeline.messages]


async def eventually(check: Callable[[], Any], what: str, timeout: float = TIMEOUT,
                     app: ChatApp | None = None) -> Any:
    """Poll ``check`` until it holds; on a timeout, the app's screen (if given) says
    what the person saw."""
    try:
        return await until(check, what, timeout)
    except AssertionError as exc:
        if app is None:
            raise
        raise AssertionError(f"{exc}; the screen:\n{screen(app)}") from None
