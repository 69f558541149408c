"""``mls-bridge``: the bridge's command line.

    mls-bridge run --config FILE            run the bridge until SIGTERM/SIGINT
    mls-bridge check-config FILE            validate; print what run would do (no secrets)
    mls-bridge generate-registration --config FILE --out registration.yaml
    mls-bridge demo                         local Prosody + Synapse, a short conversation
    mls-bridge devservers                   local servers and two accounts for chat
    mls-bridge chat --xmpp JID | --matrix MXID --homeserver URL
                                            a terminal chat client (bridge.chat.main)

Exit codes: 0 success (also after SIGTERM/SIGINT, even with the servers already gone:
the graceful stop is bounded by ``shutdown_timeout``), 1 runtime failure (a server stayed
unreachable after ``retry.attempts``, the store failed), 2 bad configuration or a server
that refused the bridge's credentials. Errors are one line on standard error, never a
traceback; logs are structured (:mod:`bridge.app.logs`).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence

from bridge.app.config import Config, ConfigError, load_config
from bridge.app.demo import main as demo_main
from bridge.app.devstack import main as devstack_main
from bridge.app.logs import event, setup_logging
from bridge.app.runtime import FatalError, serve
from bridge.app.signals import end_leftover_tasks, stop_on_signals
from bridge.chat.main import main as chat_main
from bridge.errors import StoreError
from bridge.hub.store import peek_room_pairs
from transports.matrix.appservice import generate_registration

log = logging.getLogger("bridge.app.cli")  # not __name__: "__main__" under python -m

#: The process exits at the latest ``shutdown_timeout`` + this many seconds after a
#: signal (the watchdog of :func:`bridge.app.signals.stop_on_signals`).
OVERRUN_MARGIN = 4.0


def _fail(message: str, code: int) -> int:
    print(f"mls-bridge: {message}", file=sys.stderr, flush=True)
    return code


def _load(path: str) -> Config:
    return load_config(path)


# -- run ------------------------------------------------------------------------------------


def cmd_run(args: argparse.Namespace) -> int:
    config = _load(args.config)
    setup_logging(config.log.level, config.log.format, config.log.file, config.secrets())

    async def main() -> int:
        stop = asyncio.Event()
        stop_on_signals(stop, lambda name: event(log, logging.INFO, "signal received",
                                                 signal=name),
                        overrun_after=config.shutdown_timeout + OVERRUN_MARGIN)
        try:
            return await serve(config, stop)
        finally:
            await end_leftover_tasks()

    try:
        return asyncio.run(main())
    except FatalError as exc:
        event(log, logging.ERROR, "bridge failed", reason=exc.message)
        return _fail(exc.message, exc.code)
    except KeyboardInterrupt:
        return 0


# -- check-config, generate-registration ----------------------------------------------------


def cmd_check_config(args: argparse.Namespace) -> int:
    config = _load(args.config)
    for line in config.describe():
        print(line)
    for line in asyncio.run(_stored_pairs(config)):
        print(line)
    print("check-config: OK")
    return 0


async def _stored_pairs(config: Config) -> list[str]:
    """The room pairs bridged at run time (``!mls bridge``, XEP-0050), from the store
    read without writing; the configuration's pairs win where they share a room."""
    try:
        pairs = await peek_room_pairs(config.store.connect_url())
    except StoreError as exc:
        return [f"run-time room pairs: unknown ({exc})"]
    taken = {room for r in config.rooms for room in (r.xmpp, r.matrix)}
    lines = [f"run-time room pairs: {len(pairs) or 'none'} (in the store)"]
    for pair in pairs:
        ignored = " -- ignored: the configuration pairs one of its rooms" \
            if {pair.xmpp_room, pair.matrix_room} & taken else ""
        lines.append(f"run-time room: xmpp {pair.xmpp_room} <-> matrix {pair.matrix_room} "
                     f"({'relay' if pair.relay else 'mls'}, by {pair.changed_by}){ignored}")
    return lines


def cmd_generate_registration(args: argparse.Namespace) -> int:
    config = _load(args.config)
    matrix = config.matrix
    if matrix is None:
        raise ConfigError("matrix", "generate-registration needs a [matrix] table")
    appservice = matrix.appservice
    if appservice is None:
        raise ConfigError("matrix.appservice", "generate-registration needs a "
                                               "[matrix.appservice] table")
    if not appservice.url:
        raise ConfigError("matrix.appservice.url", "needed in the registration: where the "
                                                   "homeserver reaches the bridge")
    out = args.out or appservice.registration
    registration = generate_registration(
        appservice.url, out, id=appservice.id, sender_localpart=appservice.sender_localpart,
        user_prefix=appservice.user_prefix, server_name=matrix.server_name,
        as_token=appservice.as_token.value if appservice.as_token else None,
        hs_token=appservice.hs_token.value if appservice.hs_token else None)
    tokens = "from the configuration" if appservice.as_token and appservice.hs_token \
        else "generated (random)"
    print(f"wrote {out} (mode 0600): id {registration.id}, sender {registration.sender}, "
          f"url {registration.url}, users @{registration.user_prefix}*:"
          f"{registration.server_name}, tokens {tokens}")
    print("next: list this file in the homeserver's app_service_config_files, point "
          "matrix.appservice.registration at it, set matrix.mode = \"appservice\"")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    return demo_main(keep=args.keep, workdir=args.workdir)


def cmd_devservers(args: argparse.Namespace) -> int:
    return devstack_main(workdir=args.workdir)


# -- entry point ------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mls-bridge", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = commands.add_parser("run", help="run the bridge until SIGTERM/SIGINT")
    run.add_argument("--config", "-c", required=True, help="TOML configuration file")
    run.set_defaults(func=cmd_run)
    check = commands.add_parser("check-config", help="validate a configuration file")
    check.add_argument("config", help="TOML configuration file")
    check.set_defaults(func=cmd_check_config)
    gen = commands.add_parser("generate-registration",
                              help="write the Matrix application-service registration")
    gen.add_argument("--config", "-c", required=True, help="TOML configuration file")
    gen.add_argument("--out", "-o", default="",
                     help="file to write (default: matrix.appservice.registration)")
    gen.set_defaults(func=cmd_generate_registration)
    demo = commands.add_parser("demo", help="local Prosody + Synapse and a short bridged "
                                            "conversation")
    demo.add_argument("--keep", action="store_true", help="keep the demo's directory")
    demo.add_argument("--workdir", default="", help="directory for servers and database "
                                                    "(default: a new temporary one)")
    demo.set_defaults(func=cmd_demo)
    dev = commands.add_parser("devservers", help="Prosody, Synapse and the bridge on "
                                                 "127.0.0.1 with two test accounts, "
                                                 "left running for mls-bridge chat")
    dev.add_argument("--workdir", default="", help="directory for servers and accounts "
                                                   "(default: a new temporary one)")
    dev.set_defaults(func=cmd_devservers)
    commands.add_parser("chat", add_help=False,
                        help="a terminal chat client for one XMPP or Matrix account "
                             "(mls-bridge chat --help)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["chat"]:  # its own options: parsed by bridge.chat.main
        return chat_main(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except ConfigError as exc:
        return _fail(f"configuration error: {exc}", 2)


if __name__ == "__main__":
    sys.exit(main())
