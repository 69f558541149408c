"""Configuration loading: every kind of bad key is named by its dotted path; secrets
come inline, from the environment or from files and never show in output."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from unittest.mock import MagicMock

import pytest

from bridge.app.cli import main
from bridge.app.config import ConfigError, load_config
from bridge.app.runtime import build_service
from bridge.hub import HubIdentity
from bridge.hub.policy import HubConfig, JoinPolicy
from tests.cli.conftest import EXAMPLE, MATRIX_PASSWORD, XMPP_SECRET, cli, minimal_config, write
from transports.xmpp.upload import LOOPBACK_HOSTS

EXAMPLE_ENV = {"MLS_BRIDGE_COMPONENT_SECRET": XMPP_SECRET,
               "MLS_BRIDGE_MATRIX_PASSWORD": MATRIX_PASSWORD}

MATRIX_BOT = ('homeserver = "http://127.0.0.1:8008"\nserver_name = "localhost"\n'
              f'user = "@hub:localhost"\npassword = "{MATRIX_PASSWORD}"')
ROOM = 'name = "a"\nxmpp = "a@mls.localhost"\nmatrix = "!abc:localhost"'


def test_example_validates_and_documents_every_key() -> None:
    config = load_config(EXAMPLE, env=EXAMPLE_ENV)
    assert config.xmpp is not None and config.xmpp.secret.value == XMPP_SECRET
    assert config.matrix is not None and config.matrix.password is not None
    assert config.matrix.password.value == MATRIX_PASSWORD
    assert [r.name for r in config.rooms] == ["general"]
    text = EXAMPLE.read_text(encoding="utf-8")
    # every key the loader accepts appears in the example (commented or not)
    for key in ("shutdown_timeout", "url", "password_env", "name", "identity_file",
                "max_payload", "max_epoch_lag", "log_page_limit", "initial_delay", "max_delay",
                "attempts", "level", "format", "file", "enabled", "host", "port", "jid",
                "secret_env", "stanza_limit", "upload", "admins", "leave_grace",
                "connect_timeout", "homeserver", "server_name", "mode", "user", "device_id",
                "sync_timeout_ms", "registration", "listen_host", "listen_port", "id",
                "sender_localpart", "user_prefix", "as_token_env", "hs_token_file", "xmpp",
                "matrix", "relay", "join", "default_join", "max_key_packages_per_device",
                "max_devices", "max_device_name", "max_key_package_lifetime",
                "max_key_package_size", "claims_per_target", "claim_ttl", "secrets",
                "upload_hosts", "file_limit"):
        assert f"{key} =" in text, key
    (room,) = config.rooms
    assert (room.join, room.admins) == ("invite", ("xmpp:admin@example.org",
                                                    "matrix:u/admin:example.org"))
    policy = config.hub.policy
    assert (policy.default_join, policy.max_key_package_lifetime) == (JoinPolicy.INVITE,
                                                                     91 * 86400)


BAD = [
    ("missing store", {"store": ""}, "store", "required table is missing"),
    ("store scheme", {"store": 'url = "mysql://x/y"'}, "store.url", "sqlite:///"),
    ("store password in url", {"store": 'url = "postgresql://u:pw@h/db"'}, "store.url",
     "password"),
    ("sqlite password", {"store": 'url = "sqlite:///x.db"\npassword = "p1234"'},
     "store.password", "PostgreSQL"),
    ("port type", {"xmpp": 'jid = "mls.localhost"\nsecret = "s"\nport = "5347"'},
     "xmpp.port", "expected an integer, got a string"),
    ("port range", {"xmpp": 'jid = "mls.localhost"\nsecret = "s"\nport = 70000'},
     "xmpp.port", "between 1 and 65535"),
    ("unknown key", {"xmpp": 'jid = "mls.localhost"\nsecret = "s"\nprot = 1'},
     "xmpp.prot", "unknown key"),
    ("unknown table", {"xmp": "a = 1"}, "xmp", "unknown key"),
    ("bridge key", {"bridge": "shutdown = 1"}, "bridge.shutdown", "unknown key"),
    ("shutdown timeout", {"bridge": "shutdown_timeout = 0"}, "bridge.shutdown_timeout",
     "at least 0.1"),
    ("missing secret", {"xmpp": 'jid = "mls.localhost"'}, "xmpp.secret",
     "required secret is missing"),
    ("two secrets", {"xmpp": 'jid = "mls.localhost"\nsecret = "s"\nsecret_env = "X"'},
     "xmpp.secret", "only one"),
    ("unset env", {"xmpp": 'jid = "mls.localhost"\nsecret_env = "MLS_TEST_UNSET_VAR"'},
     "xmpp.secret_env", "MLS_TEST_UNSET_VAR is not set"),
    ("missing file", {"xmpp": 'jid = "mls.localhost"\nsecret_file = "nope/secret"'},
     "xmpp.secret_file", "cannot read"),
    ("bad jid", {"xmpp": 'jid = "hub@mls.localhost"\nsecret = "s"'}, "xmpp.jid",
     "component domain"),
    ("bool for number", {"xmpp": 'jid = "mls.localhost"\nsecret = "s"\nleave_grace = true'},
     "xmpp.leave_grace", "got a boolean"),
    ("admins type", {"xmpp": 'jid = "mls.localhost"\nsecret = "s"\nadmins = [1]'},
     "xmpp.admins[0]", "expected a string"),
    ("admins network", {"xmpp": 'jid = "mls.localhost"\nsecret = "s"\n'
                                'admins = ["matrix:u/a:l"]'}, "xmpp.admins[0]", "xmpp:"),
    ("default join", {"hub": 'default_join = "anyone"'}, "hub.default_join",
     "one of invite, room, open"),
    ("lifetime cap", {"hub": "max_key_package_lifetime = 10"},
     "hub.max_key_package_lifetime", "between 3600"),
    ("claims bound", {"hub": "claims_per_target = 0"}, "hub.claims_per_target", "between 1"),
    ("backlog bound", {"hub": "delivery_backlog = 0"}, "hub.delivery_backlog", "between 1"),
    ("admit bound", {"hub": "admit_timeout = 0"}, "hub.admit_timeout", "at least 0.01"),
    ("no network", {"xmpp": ""}, "xmpp", "at least one network"),
    ("matrix mode", {"matrix": MATRIX_BOT + '\nmode = "puppet"'}, "matrix.mode",
     "one of bot, appservice"),
    ("bot without user", {"matrix": 'homeserver = "http://h:1"\nserver_name = "l"\n'
                                    'password = "p"'}, "matrix.user", "user id"),
    ("bot without password", {"matrix": 'homeserver = "http://h:1"\nserver_name = "l"\n'
                                        'user = "@a:l"'}, "matrix.password", "password"),
    ("appservice table", {"matrix": 'homeserver = "http://h:1"\nserver_name = "l"\n'
                                    'mode = "appservice"'}, "matrix.appservice",
     "[matrix.appservice]"),
    ("homeserver url", {"matrix": MATRIX_BOT.replace("http://", "ftp://")},
     "matrix.homeserver", "http"),
    ("log level", {"log": 'level = "loud"'}, "log.level", "one of"),
    ("metrics port", {"metrics": "port = -1"}, "metrics.port", "between"),
    ("retry order", {"retry": "initial_delay = 5\nmax_delay = 1"}, "retry.max_delay",
     "at least"),
    ("relay secrets empty", {"bridge.relay": 'secrets = ""'}, "bridge.relay.secrets",
     "must not be empty"),
    ("relay unknown key", {"bridge.relay": 'secret = "x"'}, "bridge.relay.secret",
     "unknown key"),
    ("relay file limit", {"bridge.relay": "file_limit = -1"}, "bridge.relay.file_limit",
     "between 0 and 2147483648"),
    ("upload hosts", {"xmpp": 'jid = "mls.localhost"\nsecret = "s"\nupload_hosts = "h"'},
     "xmpp.upload_hosts", "list of strings"),
]


@pytest.mark.parametrize(("sections", "key", "reason"), [case[1:] for case in BAD],
                         ids=[case[0] for case in BAD])
def test_bad_key_is_named(tmp_path: Path, sections: dict[str, str], key: str,
                          reason: str) -> None:
    path = write(tmp_path / "bad.toml", minimal_config(tmp_path, **sections))
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={})
    assert caught.value.key == key
    assert reason in caught.value.reason
    assert XMPP_SECRET not in str(caught.value) and MATRIX_PASSWORD not in str(caught.value)


ROOM_CASES = [
    ("room domain", 'name = "a"\nxmpp = "a@conference.localhost"\nmatrix = "!abc:localhost"',
     "bridge.rooms[0].xmpp", "name@mls.localhost"),
    ("room id", 'name = "a"\nxmpp = "a@mls.localhost"\nmatrix = "abc"', "bridge.rooms[0].matrix",
     "room id"),
    ("room missing", 'name = "a"\nxmpp = "a@mls.localhost"', "bridge.rooms[0].matrix",
     "required key"),
    ("room relay", ROOM + '\nrelay = "yes"', "bridge.rooms[0].relay", "true or false"),
    ("room join", ROOM + '\njoin = "everyone"', "bridge.rooms[0].join", "one of invite"),
    ("room admin uri", ROOM + '\nadmins = ["alice@example.org"]', "bridge.rooms[0].admins[0]",
     "identity URI"),
]


@pytest.mark.parametrize(("room", "key", "reason"), [case[1:] for case in ROOM_CASES],
                         ids=[case[0] for case in ROOM_CASES])
def test_bad_room_is_named(tmp_path: Path, room: str, key: str, reason: str) -> None:
    text = minimal_config(tmp_path, matrix=MATRIX_BOT) + f"[[bridge.rooms]]\n{room}\n"
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path / "bad.toml", text), env={})
    assert (caught.value.key, reason in caught.value.reason) == (key, True)


def test_every_hub_policy_field_is_a_hub_key(tmp_path: Path) -> None:
    """[hub] sets the whole of the hub's policy: each HubConfig field, from the example
    file, arrives in the HubConfig the bridge runs with (changed values included)."""
    example = load_config(EXAMPLE, env=EXAMPLE_ENV).hub.policy
    text = EXAMPLE.read_text(encoding="utf-8")
    names = {f.name for f in dataclasses.fields(HubConfig)} - {"certificate_validity"}
    for name in names | {"certificate_validity_days"}:
        assert f"\n{name} =" in text, name
    path = tmp_path / "bridge.toml"
    path.write_text(minimal_config(tmp_path, hub="delivery_backlog = 7\nadmit_timeout = 2.5\n"
                                                "fault_quorum = 3\nmedia_fetch_limit = 4"))
    policy = load_config(path).hub.policy
    assert (policy.delivery_backlog, policy.admit_timeout, policy.fault_quorum,
            policy.media_fetch_limit) == (7, 2.5, 3, 4)
    assert example.delivery_backlog == HubConfig().delivery_backlog


def test_duplicate_room_and_rooms_without_both_networks(tmp_path: Path) -> None:
    second = ROOM.replace('name = "a"', 'name = "b"')
    text = minimal_config(tmp_path, matrix=MATRIX_BOT) + f"[[bridge.rooms]]\n{ROOM}\n" \
        + f"[[bridge.rooms]]\n{second}\n"
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path / "dup.toml", text), env={})
    assert caught.value.key == "bridge.rooms[1].xmpp" and "already used" in caught.value.reason
    text = minimal_config(tmp_path) + f"[[bridge.rooms]]\n{ROOM}\n"
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path / "one.toml", text), env={})
    assert caught.value.key == "bridge.rooms[0].matrix"


def test_relay_secrets_have_their_own_file(tmp_path: Path) -> None:
    """The relay puppets' secrets: the configured file, else beside the SQLite store,
    never the store itself (check-config shows where)."""
    config = load_config(write(tmp_path / "c.toml", minimal_config(tmp_path)), env={})
    assert config.relay_secrets_path() == tmp_path / "bridge.db.relay-secrets"
    text = minimal_config(tmp_path, **{"bridge.relay": 'secrets = "/srv/relay.db"'})
    config = load_config(write(tmp_path / "d.toml", text), env={})
    assert config.relay_secrets_path() == Path("/srv/relay.db")
    assert "relay rooms: none (puppet secrets: /srv/relay.db)" in config.describe()


def test_relay_file_limit_and_download_hosts(tmp_path: Path) -> None:
    """``[bridge.relay] file_limit`` and ``[xmpp] upload_hosts`` reach the service:
    the relay's limit, the component's download allow-list (loopback always in)."""
    xmpp = f'jid = "mls.localhost"\nsecret = "{XMPP_SECRET}"\nupload_hosts = ["Up.Example.org"]'
    text = minimal_config(tmp_path, xmpp=xmpp, **{"bridge.relay": "file_limit = 5000000"})
    config = load_config(write(tmp_path / "c.toml", text), env={})
    assert (config.relay_file_limit, config.xmpp and config.xmpp.upload_hosts) == (
        5_000_000, ("up.example.org",))
    described = "\n".join(config.describe())
    assert "relay files: up to 5000000 bytes (larger ones become a notice)" in described
    assert "downloads from loopback, up.example.org)" in described
    service = build_service(config, MagicMock(), HubIdentity.generate("h"))
    assert service.relay.mapper.files.configured == 5_000_000
    assert service.xmpp_config is not None  # the component is made from it at start
    assert service.xmpp_config.upload_hosts == LOOPBACK_HOSTS | {"up.example.org"}
    default = load_config(write(tmp_path / "d.toml", minimal_config(tmp_path)), env={})
    assert default.relay_file_limit == 0
    assert "relay files: up to the smaller server upload limit" in "\n".join(
        default.describe())


def test_olm_store_has_its_own_file(tmp_path: Path) -> None:
    """The bot's olm store (bot mode only): the configured file, else beside the
    SQLite store, never the store itself; an empty path is refused by name."""
    matrix = ('homeserver = "http://127.0.0.1:8008"\nserver_name = "localhost"\n'
              'user = "@hub:localhost"\npassword = "pw"')
    config = load_config(write(tmp_path / "x.toml", minimal_config(tmp_path)), env={})
    assert config.olm_store_path() is None  # no Matrix network
    text = minimal_config(tmp_path, matrix=matrix)
    config = load_config(write(tmp_path / "c.toml", text), env={})
    assert config.olm_store_path() == tmp_path / "bridge.db.olm"
    text = minimal_config(tmp_path, matrix=matrix,
                          **{"bridge.relay": 'olm_store = "/srv/bot.olm"'})
    config = load_config(write(tmp_path / "d.toml", text), env={})
    assert config.olm_store_path() == Path("/srv/bot.olm")
    assert any("olm store /srv/bot.olm" in line for line in config.describe())
    text = minimal_config(tmp_path, matrix=matrix, **{"bridge.relay": 'olm_store = ""'})
    with pytest.raises(ConfigError, match=r"bridge\.relay\.olm_store"):
        load_config(write(tmp_path / "e.toml", text), env={})


def test_not_toml_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(write(tmp_path / "x.toml", "[store\nurl = 1"))
    with pytest.raises(ConfigError, match="cannot read the file"):
        load_config(tmp_path / "absent.toml")


def test_secrets_from_env_and_files(tmp_path: Path) -> None:
    (tmp_path / "secrets").mkdir()
    write(tmp_path / "secrets" / "matrix", MATRIX_PASSWORD + "\n")
    write(tmp_path / "pg", "pg-pass/word@x\n")
    text = minimal_config(
        tmp_path,
        store='url = "postgresql://bridge@db.example:5432/mls"\npassword_file = "pg"',
        xmpp='jid = "mls.localhost"\nsecret_env = "COMPONENT"',
        matrix=MATRIX_BOT.replace(f'password = "{MATRIX_PASSWORD}"',
                                  'password_file = "secrets/matrix"'))
    config = load_config(write(tmp_path / "c.toml", text), env={"COMPONENT": XMPP_SECRET})
    assert config.xmpp is not None and config.matrix is not None
    assert (config.xmpp.secret.value, config.xmpp.secret.source) == (XMPP_SECRET,
                                                                      "env:COMPONENT")
    assert config.matrix.password is not None
    assert config.matrix.password.value == MATRIX_PASSWORD  # trailing newline stripped
    assert config.matrix.password.source == f"file:{tmp_path / 'secrets' / 'matrix'}"
    assert config.store.connect_url() == \
        "postgresql://bridge:pg-pass%2Fword%40x@db.example:5432/mls"
    assert config.store.display_url() == "postgresql://bridge@db.example:5432/mls"
    assert sorted(config.secrets()) == sorted([XMPP_SECRET, MATRIX_PASSWORD, "pg-pass/word@x"])
    shown = "\n".join(config.describe()) + repr(config)
    for secret in config.secrets():
        assert secret not in shown


def test_check_config_prints_the_plan_without_secrets(tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in EXAMPLE_ENV.items():
        monkeypatch.setenv(name, value)
    assert main(["check-config", str(EXAMPLE)]) == 0
    out = capsys.readouterr().out
    assert XMPP_SECRET not in out and MATRIX_PASSWORD not in out
    for expected in ("network xmpp: component mls.example.org -> 127.0.0.1:5347",
                     "secret env:MLS_BRIDGE_COMPONENT_SECRET",
                     "network matrix: bot @mlshub:example.org",
                     "store: sqlite:////var/lib/mls-bridge/bridge.db",
                     "room general: xmpp general@mls.example.org <-> matrix "
                     "!general:example.org (mls, join=invite, admins xmpp:admin@example.org, "
                     "matrix:u/admin:example.org)",
                     "hub policy: default_join=invite",
                     "relay rooms: none", "listener metrics: http://127.0.0.1:9464/metrics",
                     "check-config: OK"):
        assert expected in out, expected


def test_bad_config_exits_2_naming_the_key_without_traceback(tmp_path: Path) -> None:
    path = write(tmp_path / "bad.toml", minimal_config(
        tmp_path, xmpp=f'jid = "mls.localhost"\nsecret = "{XMPP_SECRET}"\nport = "x"'))
    for args in (["check-config", str(path)], ["run", "--config", str(path)]):
        done = cli(*args)
        assert done.returncode == 2, done
        assert "xmpp.port: expected an integer, got a string" in done.stderr
        assert "Traceback" not in done.stderr and XMPP_SECRET not in done.stderr + done.stdout
