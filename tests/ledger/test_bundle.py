"""Export bundles verify offline with only the vkey; tampering with files is named."""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import pytest

from flowloom.ledger.bundle import export_bundle, verify_bundle
from flowloom.ledger.log import Ledger
from flowloom.ledger.note import Signer
from flowloom.ledger.tiles import decode_entry_bundle, encode_entry_bundle, entries_path
from flowloom.ledger.verify import VerifyReport
from flowloom.store.interface import Store
from tests.support.ledgers import fill, make_ledger

SIZE = 600  # two full entry bundles and a partial one; a level-1 tile


@pytest.fixture
def bundle(sqlite_store: Store, tmp_path: Path) -> tuple[Ledger, Path]:
    ledger = make_ledger(sqlite_store, tmp_path)
    fill(ledger, SIZE - 1)  # the export records itself: SIZE entries in all
    out = tmp_path / "bundle"
    manifest = export_bundle(ledger, out)
    assert manifest["size"] == SIZE
    return ledger, out


def _found(report: VerifyReport) -> set[tuple[int | None, str]]:
    return {(p.index, p.what) for p in report.problems if p.what not in ("manifest",)}


def _rewrite(path: Path, change) -> None:  # type: ignore[no-untyped-def]
    entries = decode_entry_bundle(path.read_bytes())
    path.write_bytes(encode_entry_bundle(change(entries)))


def test_bundle_verifies_with_only_the_vkey(bundle: tuple[Ledger, Path], tmp_path: Path) -> None:
    ledger, out = bundle
    moved = tmp_path / "elsewhere"
    shutil.copytree(out, moved)
    report = verify_bundle(moved, ledger.verifier)
    assert report.ok, [p.line() for p in report.problems]
    assert report.size == SIZE
    assert report.bodies_checked == SIZE - 1
    assert (moved / "tile/0/002.p/88").is_file()
    assert (moved / "tile/1/000.p/2").is_file()
    assert (moved / "tile/entries/000").is_file()


def test_wrong_key_is_refused(bundle: tuple[Ledger, Path]) -> None:
    _, out = bundle
    other = Signer.generate("flowloom.test/proj").verifier()
    report = verify_bundle(out, other)
    assert {p.what for p in report.problems} == {"checkpoint"}


def test_export_refuses_a_non_empty_directory(bundle: tuple[Ledger, Path]) -> None:
    ledger, out = bundle
    from flowloom.errors import InputError

    with pytest.raises(InputError):
        export_bundle(ledger, out)


def test_edit_in_bundle_is_named(bundle: tuple[Ledger, Path]) -> None:
    ledger, out = bundle
    path = out / entries_path(1)
    _rewrite(path, lambda e: [*e[:10], e[10].replace(b"prompt", b"prompX"), *e[11:]])
    assert _found(verify_bundle(out, ledger.verifier)) == {(266, "modified")}


def test_delete_in_bundle_is_named(bundle: tuple[Ledger, Path]) -> None:
    ledger, out = bundle
    _rewrite(out / entries_path(0), lambda e: [*e[:7], *e[8:]])
    found = _found(verify_bundle(out, ledger.verifier))
    assert (7, "missing") in found


def test_insert_in_bundle_is_named(bundle: tuple[Ledger, Path]) -> None:
    ledger, out = bundle
    _rewrite(out / entries_path(0), lambda e: [*e[:7], e[3].replace(b"file3", b"forge"), *e[7:255]])
    found = _found(verify_bundle(out, ledger.verifier))
    assert (7, "inserted") in found


def test_reorder_in_bundle_is_named(bundle: tuple[Ledger, Path]) -> None:
    ledger, out = bundle
    _rewrite(out / entries_path(0), lambda e: [*e[:4], e[9], *e[5:9], e[4], *e[10:]])
    assert _found(verify_bundle(out, ledger.verifier)) == {(4, "reordered"), (9, "reordered")}


def test_truncated_bundle_is_named(bundle: tuple[Ledger, Path]) -> None:
    ledger, out = bundle
    path = out / entries_path(2, SIZE - 512)
    path.write_bytes(path.read_bytes()[:-50])
    found = _found(verify_bundle(out, ledger.verifier))
    assert (SIZE - 1, "modified") in found or (SIZE - 1, "missing") in found


def test_removed_bundle_file_is_named(bundle: tuple[Ledger, Path]) -> None:
    ledger, out = bundle
    (out / entries_path(1)).unlink()
    found = _found(verify_bundle(out, ledger.verifier))
    assert (256, "missing") in found


@pytest.mark.parametrize("seed", range(12))
def test_any_single_bit_flip_is_detected(bundle: tuple[Ledger, Path], seed: int) -> None:
    ledger, out = bundle
    rnd = random.Random(seed)
    files = sorted(p for p in out.rglob("*") if p.is_file() and p.name != "manifest.json")
    target = rnd.choice(files)
    data = bytearray(target.read_bytes())
    bit = rnd.randrange(len(data) * 8)
    data[bit // 8] ^= 1 << (bit % 8)
    target.write_bytes(bytes(data))
    report = verify_bundle(out, ledger.verifier)
    assert not report.ok, f"flip of bit {bit} in {target.relative_to(out)} went unnoticed"
    if "tile/entries" in str(target):
        assert any(p.index is not None for p in report.problems)


def test_body_tampering_in_bundle_is_named(bundle: tuple[Ledger, Path]) -> None:
    ledger, out = bundle
    envelope = ledger.entry(12).envelope
    digest = envelope.split(b'"body":"sha256:')[1][:64].decode()
    path = out / "bodies" / digest
    path.write_bytes(path.read_bytes() + b"!")
    assert _found(verify_bundle(out, ledger.verifier)) == {(12, "body mismatch")}


def test_subject_bodies_can_be_withheld(sqlite_store: Store, tmp_path: Path) -> None:
    ledger = make_ledger(sqlite_store, tmp_path)
    fill(ledger, 3)
    ledger.record("agent.prompt", body=b"Jane Roe's diagnosis", data_subject="jane")
    out = tmp_path / "bundle"
    manifest = export_bundle(ledger, out, withhold_subject_bodies=True)
    assert len(manifest["withheld_bodies"]) == 1
    for path in out.rglob("*"):
        if path.is_file():
            assert b"Jane Roe" not in path.read_bytes()
    report = verify_bundle(out, ledger.verifier)
    assert report.ok, [p.line() for p in report.problems]
