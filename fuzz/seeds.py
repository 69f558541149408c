"""Valid inputs to start fuzzing from.

Two sources, both produced at run time:

* :func:`scenario` -- a real three-member group built by our own code (deterministic
  randomness): application messages, proposals and commits as PublicMessage and
  PrivateMessage, a Welcome, a GroupInfo, a KeyPackage, the ratchet tree and the
  Welcome's GroupSecrets, plus the receiving member's group state (the target of the
  ``group-process`` family).
* :func:`vector_seeds` -- the official mlswg vector files, read from
  ``MLS_TEST_VECTORS_DIR`` (default ``../shared/test-vectors`` beside the checkout).
  They are read, never copied into the project. Missing files are skipped.
"""

from __future__ import annotations

import functools
import json
import os
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bridge.member.content import Attachment, Content
from mls.codec import decode, encode
from mls.crypto import suite
from mls.enums import WireFormat
from mls.group.config import GroupConfig
from mls.group.group import Group
from mls.group.key_package import KeyPackageBundle, create_key_package
from mls.messages.credentials import Credential
from mls.messages.framing import MLSMessage
from mls.messages.welcome import GroupSecrets
from transports.interface import Inbound, KeyPackageListing, Kind, Op, Outbound
from transports.matrix import events
from transports.xmpp import stanzas

NOW = 1_700_000_000
REPO_ROOT = Path(__file__).resolve().parents[1]


def vector_dir() -> Path:
    return Path(os.environ.get("MLS_TEST_VECTORS_DIR",
                               REPO_ROOT.parent / "shared" / "test-vectors"))


@dataclass
class Scenario:
    """Bob's group at epoch 1 and messages of every kind that epoch accepts."""

    bob: Group
    carol_bundle: KeyPackageBundle = field(repr=False)
    messages: list[bytes]  # MLSMessage bytes, every wire format
    key_package: bytes  # a KeyPackage struct (not wrapped)
    welcome: bytes  # a Welcome struct
    group_info: bytes  # a GroupInfo struct
    ratchet_tree: bytes
    group_secrets: bytes
    plaintexts: list[bytes] = field(repr=False, default_factory=list)


def _bundle(name: bytes, rng: random.Random) -> KeyPackageBundle:
    cs = suite(1)
    signature_priv, _ = cs.generate_signature_key_pair(rng.randbytes)
    return create_key_package(cs, Credential.basic(name), signature_priv, rng=rng.randbytes,
                              now=NOW)


@functools.cache
def scenario() -> Scenario:
    """Build the group (cached: it costs some hundred milliseconds)."""
    rng = random.Random(20240601)
    draw = rng.randbytes
    alice_kp, bob_kp, carol_kp, dave_kp = (_bundle(n, rng)
                                           for n in (b"alice", b"bob", b"carol", b"dave"))
    alice = Group.create(alice_kp, group_id=b"fuzz group", rng=draw)
    staged = alice.commit(rng=draw, add=[bob_kp.key_package, carol_kp.key_package], now=NOW)
    alice = alice.merge(staged)
    assert staged.welcome is not None
    bob = Group.join(staged.welcome, bob_kp, now=NOW)
    carol = Group.join(staged.welcome, carol_kp, now=NOW,
                       config=GroupConfig(handshake_wire_format=WireFormat.PRIVATE_MESSAGE))
    plaintexts = [b"hello bob", b"second message", b"from carol"]
    messages: list[MLSMessage] = []
    alice, message = alice.encrypt(plaintexts[0], rng=draw, authenticated_data=b"ad")
    messages.append(message)
    alice, message = alice.encrypt(plaintexts[1], rng=draw)
    messages.append(message)
    carol, message = carol.encrypt(plaintexts[2], rng=draw)
    messages.append(message)
    _, message = alice.propose_update(rng=draw)
    messages.append(message)
    _, message = alice.propose_remove(2, rng=draw)
    messages.append(message)
    _, message = carol.propose_add(dave_kp.key_package, rng=draw)  # PrivateMessage proposal
    messages.append(message)
    commit = alice.commit(rng=draw, add=[dave_kp.key_package], force_path=True, now=NOW)
    messages.append(commit.message)
    messages.append(carol.commit(rng=draw, remove=[0]).message)  # PrivateMessage commit
    assert commit.welcome is not None
    messages.append(commit.welcome)
    messages.append(MLSMessage.wrap(alice.group_info()))
    messages.append(MLSMessage.wrap(dave_kp.key_package))
    secrets = _welcome_secrets(staged.welcome, bob_kp)
    return Scenario(bob=bob, carol_bundle=carol_kp, messages=[encode(m) for m in messages],
                    key_package=encode(dave_kp.key_package), welcome=encode(commit.welcome.body),
                    group_info=encode(alice.group_info()), ratchet_tree=bob.ratchet_tree(),
                    group_secrets=secrets, plaintexts=plaintexts)


def _welcome_secrets(welcome: Any, bundle: KeyPackageBundle) -> bytes:
    """The GroupSecrets a Welcome carries for ``bundle`` (decrypted as a joiner does)."""
    from mls.framing.refs import key_package_ref

    cs = suite(1)
    ref = key_package_ref(cs, bundle.key_package)
    welcome = welcome.body
    entry = next(e for e in welcome.secrets if e.new_member == ref)
    plaintext = cs.decrypt_with_label(bundle.init_priv, b"Welcome",
                                      welcome.encrypted_group_info,
                                      entry.encrypted_group_secrets.kem_output,
                                      entry.encrypted_group_secrets.ciphertext)
    decode(GroupSecrets, plaintext)
    return plaintext


# -- the official vectors ------------------------------------------------------------------

def _load(name: str) -> list[dict[str, Any]]:
    path = vector_dir() / name
    if not path.exists():
        return []
    with path.open() as fh:
        data = json.load(fh)
    return data if isinstance(data, list) else []


def _hex(value: object) -> bytes | None:
    if isinstance(value, str) and value:
        try:
            return bytes.fromhex(value)
        except ValueError:
            return None
    return None


def _body(message: bytes) -> bytes:
    """The body of an MLSMessage (after version and wire_format)."""
    return message[4:]


@functools.cache
def vector_seeds() -> dict[str, list[bytes]]:
    """Seeds by family from the vector files (see the module docstring)."""
    out: dict[str, list[bytes]] = {name: [] for name in (
        "mls-message", "key-package", "welcome", "group-info", "ratchet-tree",
        "group-secrets")}

    def add(family: str, value: object, *, body: bool = False) -> None:
        data = _hex(value)
        if data is not None:
            out[family].append(_body(data) if body else data)
            if body:
                out["mls-message"].append(data)

    for case in _load("messages.json"):
        add("welcome", case.get("mls_welcome"), body=True)
        add("group-info", case.get("mls_group_info"), body=True)
        add("key-package", case.get("mls_key_package"), body=True)
        add("ratchet-tree", case.get("ratchet_tree"))
        add("group-secrets", case.get("group_secrets"))
        for key in ("public_message_application", "public_message_proposal",
                    "public_message_commit", "private_message"):
            add("mls-message", case.get(key))
    for name in ("welcome.json", "passive-client-welcome.json",
                 "passive-client-handling-commit.json", "passive-client-random.json"):
        for case in _load(name):
            add("welcome", case.get("welcome"), body=True)
            add("key-package", case.get("key_package"), body=True)
            add("ratchet-tree", case.get("ratchet_tree"))
            for epoch in case.get("epochs", ()):
                add("mls-message", epoch.get("commit"))
                for proposal in epoch.get("proposals", ()):
                    add("mls-message", proposal)
    for case in _load("tree-validation.json"):
        add("ratchet-tree", case.get("tree"))
    for case in _load("treekem.json"):
        add("ratchet-tree", case.get("ratchet_tree"))
    for name, seeds in out.items():
        out[name] = list(dict.fromkeys(seeds))  # dedupe, keep order
    return out


# -- transports and content ---------------------------------------------------------------

def _sample_outbounds() -> Iterator[Outbound]:
    entry = Outbound(str(Kind.COMMIT), group_id=b"g" * 8, seq=4, epoch=2,
                     sender="xmpp:a@example.org", payload=b"\x00\x01commit")
    listing = KeyPackageListing(b"\x05" * 32, "xmpp:b@example.org", "phone", 1, NOW, False)
    yield Outbound(str(Kind.REPLY), request_id="r1", group_id=b"g" * 8, seq=7, epoch=3,
                   payload=b"\x01" * 40, ratchet_tree=b"\x02" * 20,
                   rooms=(("xmpp", "room@mls.example.org"),), entries=(entry, entry),
                   key_packages=(listing,))
    yield Outbound(str(Kind.APPLICATION), ("xmpp:a@example.org",), group_id=b"g" * 8,
                   seq=9, epoch=3, sender="xmpp:a@example.org", payload=b"\x03" * 64,
                   rooms=(("matrix", "!room:example.org"),))
    yield Outbound(str(Kind.WELCOME), ("xmpp:c@example.org",), group_id=b"g" * 8, seq=5,
                   epoch=4, sender="xmpp:a@example.org", payload=b"\x04" * 80,
                   ratchet_tree=b"\x05" * 30, rooms=(("matrix", "!r:example.org"),))
    yield entry
    yield Outbound(str(Kind.REPLY), request_id="r2", ok=False, code="wrong-epoch",
                   reason="wrong epoch (current 3)", epoch=3)


def _sample_inbounds() -> Iterator[Inbound]:
    for op in Op:
        yield Inbound(str(op), "xmpp:a@example.org", request_id="r-" + op.value,
                      group_id=b"g" * 8, payload=b"\x00\x01" * 10, welcome=b"\x02" * 12,
                      group_info=b"\x03" * 9, ratchet_tree=b"\x04" * 7,
                      target="xmpp:b@example.org", device="d1", transport="xmpp",
                      room_id="room@mls.example.org", cipher_suite=1, after_seq=3, limit=10,
                      last_resort=op == Op.PUBLISH_KEY_PACKAGE)


def xml_seeds() -> list[bytes]:
    from xml.etree import ElementTree as ET

    out = [ET.tostring(stanzas.encode_request(request)) for request in _sample_inbounds()]
    for message in _sample_outbounds():
        out.append(ET.tostring(stanzas.encode_reply(message)))
        if message.kind != Kind.REPLY:
            out.append(ET.tostring(stanzas.encode_delivery(message)))
    out.append(ET.tostring(stanzas.encode_rejected("wrong-epoch", 4)))
    return out


def _b64_bytes(value: Any) -> Any:
    """Builders leave bytes for the media layer: inline them as unpadded base64."""
    if isinstance(value, bytes):
        return events.b64encode(value)
    if isinstance(value, dict):
        return {key: _b64_bytes(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_b64_bytes(item) for item in value]
    return value


def json_seeds() -> list[bytes]:
    """``{"type": event type, "content": content}`` documents of every shape."""
    docs: list[tuple[str, dict[str, Any]]] = []
    for request in _sample_inbounds():
        docs.append(("im.mlsbridge.request", events.request_content(request, "DEV")))
    for message in _sample_outbounds():
        if message.kind in (Kind.COMMIT, Kind.PROPOSAL, Kind.APPLICATION):
            docs.append(events.room_event(message))
            docs.append(("im.mlsbridge.delivery", events.delivery_content(message)))
        elif message.kind == Kind.WELCOME:
            docs.append(("im.mlsbridge.welcome", events.welcome_content(message)))
        else:
            docs.append(("im.mlsbridge.response", events.response_content(message)))
    docs.append(("im.mlsbridge.group", events.group_state_content(events.GroupState(
        b"g" * 8, 1, "matrix:u/hub:example.org", "@hub:example.org", "HUBDEV"))))
    return [json.dumps({"type": kind, "content": _b64_bytes(content)}).encode()
            for kind, content in docs]


def cbor_seeds() -> list[bytes]:
    attachment = Attachment("https://files.example.org/x", b"\x07" * 32, 1234, "image/png")
    return [
        Content(b"\x01" * 16).encode(),
        Content(b"\x02" * 16, "hello").encode(),
        Content(b"\x03" * 32, "reply", reply_to=b"\x01" * 16).encode(),
        Content(b"\x04" * 64, "", replaces=b"\x02" * 16).encode(),
        Content(b"\x05" * 20, "see attached", attachment=attachment).encode(),
    ]
