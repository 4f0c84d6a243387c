"""Several threads and processes changing one directory at once: no lost or doubled rows."""

from __future__ import annotations

import multiprocessing
import threading
from collections.abc import Callable

from argon2 import PasswordHasher

from flowloom.auth.directory import Directory
from flowloom.auth.schema import load_directory_migrations
from tests.auth.conftest import AuditLog, DirectoryFactory

WORKERS = 4
KEYS_EACH = 5


def _run_threads(target: Callable[[int], None], count: int = WORKERS) -> None:
    errors: list[BaseException] = []
    start = threading.Barrier(count)

    def run(i: int) -> None:
        try:
            start.wait()
            target(i)
        except BaseException as exc:  # collected and re-raised below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors


def test_threads_create_keys(directory: Directory) -> None:
    ann = directory.create_user("ann@example.org", "Ann")
    secrets: list[str] = []
    lock = threading.Lock()

    def work(i: int) -> None:
        for j in range(KEYS_EACH):
            _, secret = directory.create_key(ann.id, name=f"k{i}-{j}")
            with lock:
                secrets.append(secret)

    _run_threads(work)
    keys = directory.list_keys(ann.id)
    assert len(keys) == WORKERS * KEYS_EACH == len(set(secrets))
    assert len({k.prefix for k in keys}) == len(keys)
    for secret in secrets:
        assert directory.principal_for_key(secret).user_id == ann.id


def test_threads_grant_the_same_role(make_directory: DirectoryFactory, audit: AuditLog) -> None:
    directories = [make_directory() for _ in range(WORKERS)]  # like separate server processes
    directories[0].create_project("alpha")
    ann = directories[0].create_user("ann@example.org", "Ann")

    def work(i: int) -> None:
        directories[i].grant(ann.id, "alpha", "developer")
        directories[i].grant(ann.id, "alpha", f"{['auditor', 'approver'][i % 2]}")

    _run_threads(work)
    assert directories[0].grants_of(ann.id) == {"alpha": {"developer", "auditor", "approver"}}
    assert len(audit.of("auth.role_granted")) == 3  # each grant audited exactly once


def test_threads_rotate_one_key(directory: Directory) -> None:
    ann = directory.create_user("ann@example.org", "Ann")
    key, _ = directory.create_key(ann.id, name="k")
    from datetime import timedelta

    def work(i: int) -> None:
        directory.rotate_key(key.id, overlap=timedelta(hours=1))

    _run_threads(work)
    keys = directory.list_keys(ann.id)
    assert len(keys) == WORKERS + 1
    assert sum(1 for k in keys if k.rotated_from == key.id) == WORKERS


def _process_worker(url: str, user_id: str, index: int) -> list[str]:
    directory = Directory(url, password_hasher=PasswordHasher(time_cost=1, memory_cost=64))
    try:
        made = []
        for j in range(KEYS_EACH):
            _, secret = directory.create_key(user_id, name=f"p{index}-{j}")
            made.append(secret)
            directory.grant(user_id, "alpha", "developer")
        return made
    finally:
        directory.close()


def test_processes_create_keys_and_grants(db_url: str, directory: Directory) -> None:
    directory.create_project("alpha")
    ann = directory.create_user("ann@example.org", "Ann")
    context = multiprocessing.get_context("spawn")
    with context.Pool(3) as pool:
        results = pool.starmap(_process_worker, [(db_url, ann.id, i) for i in range(3)])
    secrets = [s for batch in results for s in batch]
    assert len(set(secrets)) == 3 * KEYS_EACH
    assert len(directory.list_keys(ann.id)) == 3 * KEYS_EACH
    assert directory.grants_of(ann.id) == {"alpha": {"developer"}}
    for secret in secrets:
        directory.principal_for_key(secret)


def test_processes_open_a_new_database_together(db_url: str) -> None:
    """Migrations run once even when several processes open a fresh database at once."""
    context = multiprocessing.get_context("spawn")
    with context.Pool(3) as pool:
        pool.map(_open_only, [db_url] * 3)
    directory = Directory(db_url)
    try:
        with directory.engine.connect() as conn:
            from sqlalchemy import text

            versions = conn.execute(text("SELECT version FROM directory_migrations")).all()
        expected = load_directory_migrations(
            "postgres" if db_url.startswith("postgresql") else "sqlite"
        )
        assert [v[0] for v in versions] == [m.version for m in expected]
    finally:
        directory.close()


def _open_only(url: str) -> None:
    Directory(url).close()
