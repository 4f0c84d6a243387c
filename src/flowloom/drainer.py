"""The detached drainer: `python -m flowloom drain SPOOL_DIR CWD`, started by every hook.

It picks the sink once, from the settings: the team server when one is configured
(`flowloom.sinks.server`), else the local ledger (`flowloom.sinks.ledger`); then drains
the outbox and its fallback into it (`flowloom.events.drain`) under the outbox lock,
until nothing is left, makes the auto-commits waiting for it
(`flowloom.capture.autocommit.commit_waiting`: their decisions and links go to the
same sink), and runs the auto-push queue. An unavailable sink is normal,
not an error worth troubling anyone with: the files stay for the next drainer, and the
reason goes to `capture.log` beside the outbox, where `flowloom status` finds it.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time

from flowloom.events.drain import DrainReport, drain
from flowloom.events.outbox import SpoolLock, cleanup, drain_lock, outbox_dirs, waiting

__all__ = ["main", "run"]

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from flowloom.client.link import ServerLink
    from flowloom.config import Settings
    from flowloom.services import Services

_CHECK_EVERY_S = 60.0


def log(state_dir: str, line: str) -> None:
    """Append a line to `capture.log`: failures of detached work must be findable."""
    from flowloom.capture.agents.common import now_ts

    path = os.path.join(state_dir, "capture.log")
    with contextlib.suppress(OSError):
        if os.path.getsize(path) > 1024 * 1024:  # keep one old log, not an endless one
            os.replace(path, path + ".1")
    with contextlib.suppress(OSError), open(path, "a", encoding="utf-8") as fh:
        fh.write(f"{now_ts()} {line}\n")


def _cleanup(spool_dir: str, state_dir: str) -> None:
    """Old temporary outbox files, before-images, session scratch and notices no hook
    of their session came to take."""
    import shutil

    from flowloom.capture.agents.snapshots import sweep

    sweep(state_dir)
    for directory in outbox_dirs(spool_dir):
        cleanup(directory)
    week_ago = time.time() - 7 * 86400
    for kept in ("sessions", "notices"):
        folder = os.path.join(state_dir, kept)
        try:
            entries = os.listdir(folder)
        except OSError:
            continue
        for name in entries:
            path = os.path.join(folder, name)
            with contextlib.suppress(OSError):
                if os.stat(path).st_mtime < week_ago:
                    if os.path.isdir(path):
                        shutil.rmtree(path, ignore_errors=True)
                    else:
                        os.unlink(path)


def run(
    spool_dir: str,
    drain_once: Callable[[], DrainReport],
    more: Callable[[], bool] | None = None,
    held: SpoolLock | None = None,
) -> int:
    """Drain until nothing is left, another drainer holds the lock, or the sink fails.

    `more` says whether other work came in meanwhile (a commit request written after
    the last pass): a hook that found the lock held left it to this drainer. `held`:
    the lock, taken already for the first pass."""
    state_dir = os.path.dirname(spool_dir)
    directories = outbox_dirs(spool_dir)
    while True:
        lock, held = held or drain_lock(spool_dir), None
        try:
            if not lock.acquired:
                return 0  # another drainer is at work and will see our files
            report = drain_once()
            _cleanup(spool_dir, state_dir)
        finally:
            lock.__exit__()
        if report.error is not None:
            log(state_dir, f"drain stopped: {report.error.diagnostics()}")
            return 1
        if not any(waiting(d) for d in directories) and not (more is not None and more()):
            return 0


def _settings() -> Settings:
    from pathlib import Path

    from flowloom.config import load_settings

    return load_settings(Path.cwd())


def _open_services(settings: Settings) -> Services:
    from flowloom.services import build_services

    return build_services(settings)


def _server(settings: Settings, state_dir: str, held: SpoolLock | None = None) -> int:
    from flowloom.client.link import ServerLink
    from flowloom.errors import FlowLoomError
    from flowloom.sinks.server import send_outbox

    try:
        link: ServerLink = ServerLink.from_settings(settings, state_dir)
    except FlowLoomError as exc:
        log(state_dir, f"send failed: {exc.diagnostics()}")
        return 1
    spool_dir = link.spool_dir
    before = sum(len(waiting(d)) for d in outbox_dirs(spool_dir))
    if held is not None and os.path.dirname(held.path) != spool_dir:
        held.__exit__()  # the lock of another outbox than the link's
        held = None
    from flowloom.capture import autocommit
    from flowloom.events.outbox import pending

    if pending(autocommit.jobs_dir(state_dir)):
        code = _server_commits(settings, link, state_dir, held)
    else:
        code = run(spool_dir, lambda: send_outbox(link), held=held)
        # A hook may have asked for a commit once this drainer chose to only send, and
        # left it to this drainer (the lock was held): after letting the lock go, look
        # again, as `run` does for the outbox, or the request waits for the next hook.
        if code == 0 and autocommit.jobs_ready(state_dir):
            code = _server_commits(settings, link, state_dir, None)
    from flowloom.capture import pushqueue

    if pushqueue.pending(state_dir):
        pushqueue.process(state_dir, None)
    if before and code == 0:
        checked = link.trust().load().data.get("checked_epoch")
        if not isinstance(checked, int | float) or time.time() - checked >= _CHECK_EVERY_S:
            try:
                link.check()
            except FlowLoomError as exc:
                log(state_dir, f"server check failed: {exc.diagnostics()}")
                return 1
    return code


def _server_commits(
    settings: Settings, link: ServerLink, state_dir: str, held: SpoolLock | None
) -> int:
    """Send the outbox to the server and make the auto-commits waiting for it, as
    `_local` does with the ledger: the commit links and decisions go to the team's
    record (`flowloom.sinks.team`), through the outbox this process holds the lock of."""
    from flowloom.capture import autocommit
    from flowloom.services import build_team_services
    from flowloom.sinks.server import send_outbox
    from flowloom.sinks.team import TeamLedger

    spool_dir = link.spool_dir
    lock, held = held or drain_lock(spool_dir), None
    if not lock.acquired:
        lock.__exit__()
        return 0  # another drainer is at work and will see our files
    try:
        services = build_team_services(settings, state_dir, agent="auto-commit")
    except BaseException:
        lock.__exit__()
        raise
    try:
        ledger = services.ledger
        assert isinstance(ledger, TeamLedger)
        ledger.outbox.lock_held = True
        team_link = ledger.link

        def send_and_commit() -> DrainReport:
            """Send the outbox, make the commits it allows, send their links."""
            report = send_outbox(team_link)
            if report.error is None and autocommit.jobs_waiting(state_dir):
                autocommit.commit_waiting(state_dir, ledger)
                report = send_outbox(team_link)
            return report

        return run(spool_dir, send_and_commit, lambda: autocommit.jobs_ready(state_dir), lock)
    finally:
        services.close()


def _local(
    settings: Settings, spool_dir: str, state_dir: str, held: SpoolLock | None = None
) -> int:
    from flowloom.capture import autocommit, pushqueue
    from flowloom.events.outbox import pending
    from flowloom.sinks.ledger import LedgerSink

    services: Services | None = None
    try:
        code = 0
        jobs = autocommit.jobs_dir(state_dir)
        if any(waiting(d) for d in outbox_dirs(spool_dir)) or pending(jobs):
            # The lock first, then the ledger: a hook at a turn's end sees a drainer at
            # work from the start, and leaves the commits to it.
            lock, held = held or drain_lock(spool_dir), None
            if not lock.acquired:
                lock.__exit__()
                return 0  # another drainer is at work and will see our files
            try:
                services = _open_services(settings)
            except BaseException:
                lock.__exit__()
                raise
            ledger = services.ledger
            sink = LedgerSink(ledger)
            directories = outbox_dirs(spool_dir)

            def drain_and_commit() -> DrainReport:
                """Record the outbox, make the commits it allows, record their links."""
                report = drain(directories, sink)
                if report.error is None and pending(jobs):
                    autocommit.commit_waiting(state_dir, ledger)
                    report = drain(directories, sink)
                return report

            code = run(spool_dir, drain_and_commit, lambda: autocommit.jobs_ready(state_dir), lock)
        else:
            if held is not None:
                held.__exit__()
                held = None
            _cleanup(spool_dir, state_dir)
            # Work a hook left to this drainer while it held the lock: look again.
            if any(waiting(d) for d in outbox_dirs(spool_dir)) or autocommit.jobs_ready(state_dir):
                return _local(settings, spool_dir, state_dir)
        if pushqueue.pending(state_dir):
            if services is None:
                services = _open_services(settings)
            pushqueue.process(state_dir, services.ledger)
        return code
    finally:
        if services is not None:
            services.close()


def main(argv: Sequence[str]) -> int:
    """`python -m flowloom drain SPOOL_DIR CWD [--lock-fd FD]`: drain into the sink the
    settings name; `--lock-fd`: the outbox lock, taken by the hook that started it."""
    held: SpoolLock | None = None
    if len(argv) == 4 and argv[2] == "--lock-fd" and argv[3].isdigit():
        held = SpoolLock.inherited(argv[0], int(argv[3]))
        argv = argv[:2]
    if len(argv) != 2:
        sys.stderr.write("flowloom: error: usage: flowloom drain SPOOL_DIR CWD\n")
        return 2
    spool_dir, cwd = argv
    state_dir = os.path.dirname(spool_dir)
    with contextlib.suppress(OSError):
        os.chdir(cwd)
    try:
        settings = _settings()
        if settings.server_url is not None:
            return _server(settings, state_dir, held)
        return _local(settings, spool_dir, state_dir, held)
    except Exception as exc:
        log(state_dir, f"drain failed: {type(exc).__name__}: {exc}")
        return 1
