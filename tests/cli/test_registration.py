"""``mls-bridge generate-registration``: the application-service file for Synapse."""

from __future__ import annotations

import stat
from pathlib import Path

from tests.cli.conftest import cli, minimal_config, write
from transports.matrix.appservice import load_registration

AS_TOKEN = "as-token-3f9c1d2e"
HS_TOKEN = "hs-token-a8b7c6d5"


def appservice_config(tmp: Path, tokens: bool) -> Path:
    matrix = ('homeserver = "http://127.0.0.1:8008"\nserver_name = "example.org"\n'
              'mode = "appservice"\n\n[matrix.appservice]\n'
              f'registration = "{tmp / "registration.yaml"}"\n'
              'url = "http://127.0.0.1:9009"\nid = "mls-bridge-test"\n'
              'sender_localpart = "mlshub"\nuser_prefix = "mls_"\n')
    if tokens:
        write(tmp / "hs_token", HS_TOKEN + "\n")
        matrix += 'as_token_env = "TEST_AS_TOKEN"\nhs_token_file = "hs_token"\n'
    return write(tmp / "as.toml", minimal_config(tmp, xmpp="", matrix=matrix))


def test_registration_from_configured_tokens(tmp_path: Path) -> None:
    config = appservice_config(tmp_path, tokens=True)
    out = tmp_path / "out" / "reg.yaml"
    out.parent.mkdir()
    done = cli("generate-registration", "--config", str(config), "--out", str(out),
               env={"TEST_AS_TOKEN": AS_TOKEN})
    assert done.returncode == 0, done.stderr
    assert AS_TOKEN not in done.stdout + done.stderr and HS_TOKEN not in done.stdout
    assert "tokens from the configuration" in done.stdout
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    registration = load_registration(out, "example.org")
    assert (registration.id, registration.url, registration.sender) == (
        "mls-bridge-test", "http://127.0.0.1:9009", "@mlshub:example.org")
    assert (registration.as_token, registration.hs_token) == (AS_TOKEN, HS_TOKEN)
    text = out.read_text(encoding="utf-8")
    assert "receive_ephemeral: true" in text
    assert '"@mls_.*:example\\\\.org"' in text  # the user namespace, regex-escaped

    # check-config accepts it and names where the tokens come from, not their values
    checked = cli("check-config", str(config), env={"TEST_AS_TOKEN": AS_TOKEN})
    assert checked.returncode == 0, checked.stderr
    assert "as_token env:TEST_AS_TOKEN" in checked.stdout
    assert AS_TOKEN not in checked.stdout and HS_TOKEN not in checked.stdout


def test_registration_with_random_tokens_defaults_to_the_configured_path(
        tmp_path: Path) -> None:
    config = appservice_config(tmp_path, tokens=False)
    done = cli("generate-registration", "--config", str(config))
    assert done.returncode == 0, done.stderr
    assert "generated (random)" in done.stdout
    first = load_registration(tmp_path / "registration.yaml", "example.org")
    assert len(first.as_token) >= 32 and first.as_token != first.hs_token
    assert first.as_token not in done.stdout


def test_registration_needs_the_appservice_table(tmp_path: Path) -> None:
    config = write(tmp_path / "x.toml", minimal_config(tmp_path))
    done = cli("generate-registration", "--config", str(config), "--out",
               str(tmp_path / "r.yaml"))
    assert done.returncode == 2
    assert "configuration error: matrix: generate-registration needs a [matrix] table" \
        in done.stderr
    assert "Traceback" not in done.stderr


def test_run_refuses_tokens_that_differ_from_the_registration(tmp_path: Path) -> None:
    config = appservice_config(tmp_path, tokens=True)
    assert cli("generate-registration", "--config", str(config),
               env={"TEST_AS_TOKEN": AS_TOKEN}).returncode == 0
    done = cli("run", "--config", str(config), env={"TEST_AS_TOKEN": "another-token-99"})
    assert done.returncode == 2
    assert ("configuration error: matrix.appservice.as_token: does not match the "
            "registration file") in done.stderr
    assert "another-token-99" not in done.stderr and AS_TOKEN not in done.stderr
    assert "Traceback" not in done.stderr
