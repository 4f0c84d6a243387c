"""Reload: a changed file takes effect atomically; a broken one keeps the old policy."""

from __future__ import annotations

import os
import random
import threading
from pathlib import Path

from flowloom.gateway.routing import ConfigChange, Router

from .conftest import BASE, FakeClock, request

ONE = '[models.m]\ntargets = [{ provider = "us1", model = "a" }]\n'
TWO = (
    '[models.m]\ntargets = [{ provider = "eu1", model = "c" }]\n'
    '[models.n]\ntargets = [{ provider = "us2", model = "b" }]\n'
)


def write(path: Path, text: str, bump: int) -> None:
    path.write_text(text)
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + bump * 1_000_000_000))


def setup(tmp_path: Path) -> tuple[Path, FakeClock, Router, list[ConfigChange]]:
    path = tmp_path / "gateway.toml"
    path.write_text(BASE + ONE)
    clock = FakeClock()
    changes: list[ConfigChange] = []
    router = Router(path, clock=clock, rng=random.Random(1), env={}, on_change=changes.append)
    return path, clock, router, changes


def test_initial_load_is_reported(tmp_path: Path) -> None:
    _, _, router, changes = setup(tmp_path)
    assert len(changes) == 1 and changes[0].ok and changes[0].previous_digest is None
    assert changes[0].digest == router.digest and changes[0].models == 1


def test_valid_change_is_picked_up_at_most_once_a_second(tmp_path: Path) -> None:
    path, clock, router, changes = setup(tmp_path)
    old = router.digest
    write(path, BASE + TWO, 5)
    clock.advance(0.5)
    assert router.reload_if_changed() is False  # too soon to look
    assert router.plan(request())[0].model == "a"
    clock.advance(0.5)
    assert router.reload_if_changed() is True
    assert router.plan(request())[0].model == "c"
    assert {m.id for m in router.models()} == {"m", "n"}
    assert changes[-1].ok and changes[-1].previous_digest == old
    clock.advance(1)
    assert router.reload_if_changed() is False  # unchanged file


def test_touched_but_identical_file_is_not_a_change(tmp_path: Path) -> None:
    path, clock, router, changes = setup(tmp_path)
    write(path, BASE + ONE, 5)
    clock.advance(1)
    assert router.reload_if_changed() is False and len(changes) == 1


def test_broken_change_keeps_the_old_policy_and_is_reported_once(tmp_path: Path) -> None:
    path, clock, router, changes = setup(tmp_path)
    write(path, BASE + '[models.m]\ntargets = [{ provider = "ghost", model = "x" }]\n', 5)
    clock.advance(1)
    assert router.reload_if_changed() is False
    assert router.plan(request())[0].model == "a"
    bad = changes[-1]
    assert not bad.ok and bad.previous_digest == router.digest
    assert bad.error is not None and "gateway.toml:" in bad.error and "'ghost'" in bad.error
    clock.advance(1)
    assert router.reload_if_changed() is False
    assert len(changes) == 2  # not reported again until the file changes
    write(path, BASE + TWO, 10)  # fixed
    clock.advance(1)
    assert router.reload_if_changed() is True
    assert router.plan(request())[0].model == "c"


def test_syntax_error_and_deleted_file_keep_the_old_policy(tmp_path: Path) -> None:
    path, clock, router, changes = setup(tmp_path)
    write(path, "[providers.us1\n", 5)
    clock.advance(1)
    assert router.reload_if_changed() is False
    assert "not valid TOML" in (changes[-1].error or "")
    path.unlink()
    clock.advance(1)
    assert router.reload_if_changed() is False
    assert "cannot read" in (changes[-1].error or "")
    assert router.plan(request())[0].model == "a"


def test_failing_callback_does_not_break_reload(tmp_path: Path) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text(BASE + ONE)
    clock = FakeClock()

    def explode(change: ConfigChange) -> None:
        raise RuntimeError("recorder down")

    router = Router(path, clock=clock, env={}, on_change=explode)
    write(path, BASE + TWO, 5)
    clock.advance(1)
    assert router.reload_if_changed() is True


def test_health_survives_reload_for_targets_that_remain(tmp_path: Path) -> None:
    path, clock, router, _ = setup(tmp_path)
    a = router.plan(request())[0]
    router.outcome(a, ok=False, status=429, latency_s=0.1, retry_after_s=60, error_kind=None)
    write(
        path,
        BASE + ONE + '[models.n]\ntargets = [{ provider = "us1", model = "a" },'
        ' { provider = "us2", model = "b" }]\n',
        5,
    )
    clock.advance(1)
    assert router.reload_if_changed() is True
    assert [t.model for t in router.plan(request("n"))] == ["b"]  # still cooling down


def test_reload_is_atomic_under_concurrent_planning(tmp_path: Path) -> None:
    """Planners never see a half-applied policy: each plan matches the old or the new file."""
    path = tmp_path / "gateway.toml"
    versions = {
        0: '[models.m]\nmax_attempts = 2\ntargets = [{ provider = "us1", model = "a0" },'
        ' { provider = "us2", model = "b0" }]\n',
        1: '[models.m]\nmax_attempts = 2\ntargets = [{ provider = "eu1", model = "a1" },'
        ' { provider = "eu2", model = "b1" }]\n',
    }
    path.write_text(BASE + versions[0])
    clock = FakeClock()
    router = Router(path, clock=clock, env={})
    allowed = {("a0", "b0"), ("a1", "b1")}
    stop = threading.Event()
    bad: list[object] = []

    def planner() -> None:
        while not stop.is_set():
            got = tuple(t.model for t in router.plan(request()))
            if got not in allowed:
                bad.append(got)

    threads = [threading.Thread(target=planner) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        for i in range(1, 40):
            write(path, BASE + versions[i % 2], i)
            clock.advance(1)
            assert router.reload_if_changed() is True
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not bad


def test_reverting_a_broken_edit_reports_recovery(tmp_path: Path) -> None:
    path, clock, router, changes = setup(tmp_path)
    write(path, "not toml at all [", 5)
    clock.advance(1)
    router.reload_if_changed()
    assert not changes[-1].ok
    write(path, BASE + ONE, 10)
    clock.advance(1)
    assert router.reload_if_changed() is False  # same policy as in force
    assert changes[-1].ok and changes[-1].digest == router.digest
