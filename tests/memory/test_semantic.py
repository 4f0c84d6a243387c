"""Semantic search: vectors kept beside the index, fused ranking, and the extra's absence."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from flowloom.errors import ConfigError
from flowloom.ledger.log import Ledger
from flowloom.memory import semantic
from flowloom.memory.index import MemoryIndex, SearchSpec
from flowloom.memory.interface import Entity, Observations
from flowloom.memory.query import parse_terms
from flowloom.memory.semantic import (
    MODEL_PACKAGE,
    HashingEmbedder,
    SemanticUnavailableError,
    VectorIndex,
    enabled_in_config,
    fuse,
    semantic_search,
)
from flowloom.memory.service import Memory

EXTRA_INSTALLED = all(
    importlib.util.find_spec(name) is not None for name in ("numpy", "tokenizers", MODEL_PACKAGE)
)
needs_extra = pytest.mark.skipif(not EXTRA_INSTALLED, reason="the 'semantic' extra is absent")


@pytest.fixture
def index(ledger: Ledger) -> Iterator[MemoryIndex]:
    ix = MemoryIndex(ledger.store, ledger.log)
    yield ix
    ix.close()


@pytest.fixture
def smem(ledger: Ledger, index: MemoryIndex) -> Iterator[Memory]:
    """A memory with semantic search on, vectors made by the hashing embedder."""
    mem = Memory(ledger, index=index, semantic=True, embedder=HashingEmbedder())
    yield mem
    mem.close()


def vector_count(index: MemoryIndex) -> int:
    return int(index.query("SELECT COUNT(*) FROM memory_vectors")[0][0])


def doc_count(index: MemoryIndex) -> int:
    return int(index.query("SELECT COUNT(*) FROM memory_docs")[0][0])


def observe(mem: Memory, name: str, *texts: str) -> None:
    mem.create_entities([Entity(name, "component")])
    mem.add_observations([Observations(name, texts)])


# -- the pieces ------------------------------------------------------------------------


def test_hashing_embedder_is_deterministic_and_lexical() -> None:
    emb = HashingEmbedder(64)
    a, b, c = emb.embed(["postgresql storage", "postgres storage", "kafka consumers"])
    assert emb.embed(["postgresql storage"])[0] == a
    assert len(a) == emb.dimension == 64

    def cos(x: list[float], y: list[float]) -> float:
        return sum(p * q for p, q in zip(x, y, strict=True)) / (
            sum(p * p for p in x) ** 0.5 * sum(q * q for q in y) ** 0.5
        )

    assert cos(a, b) > 0.5 > cos(a, c)


def test_reciprocal_rank_fusion() -> None:
    fused = fuse([[1, 2, 3], [3, 4]])
    scores = dict(fused)
    assert [doc for doc, _ in fused][:2] == [3, 1]  # in both lists beats first in one
    assert scores[3] == pytest.approx(1 / 63 + 1 / 61)
    assert scores[1] == pytest.approx(1 / 61)
    assert fuse([]) == []


def test_config_switch(tmp_path: Path) -> None:
    user, repo = tmp_path / "user.toml", tmp_path / "repo.toml"
    user.write_text("[memory]\nsemantic = true\n")
    repo.write_text("[ledger]\nproject = 'x'\n")
    assert enabled_in_config(["defaults", str(user), str(repo), "FLOWLOOM_PROJECT"])
    repo.write_text("[memory]\nsemantic = false\n")
    assert not enabled_in_config([str(user), str(repo)])
    assert not enabled_in_config(["defaults"])
    repo.write_text("[memory]\nsemantic = 'yes'\n")
    with pytest.raises(ConfigError, match="true or false"):
        enabled_in_config([str(repo)])


# -- vectors follow the index ----------------------------------------------------------


def test_vectors_are_made_incrementally_and_follow_deletions(
    smem: Memory, index: MemoryIndex
) -> None:
    observe(smem, "storage", "we chose postgresql for the team server")
    assert vector_count(index) == doc_count(index) == 2  # the entity and its observation
    observe(smem, "queue", "kafka consumers reconnect after a broker restart")
    assert vector_count(index) == doc_count(index) == 4
    vectors = VectorIndex(index, HashingEmbedder())
    assert vectors.update() == 0  # nothing new
    # Deleting the newest document and adding one (SQLite reuses its id): embedded too.
    smem.delete_observations(
        [Observations("queue", ("kafka consumers reconnect after a broker restart",))]
    )
    assert vector_count(index) == doc_count(index) == 3
    smem.add_observations([Observations("queue", ("brokers are rebalanced nightly",))])
    assert vector_count(index) == doc_count(index) == 4
    smem.delete_entities(["storage"])
    assert vector_count(index) == doc_count(index) == 2


def test_a_new_model_reembeds_and_rebuild_keeps_vectors(
    smem: Memory, ledger: Ledger, index: MemoryIndex
) -> None:
    observe(smem, "storage", "we chose postgresql", "backups run nightly")
    other = VectorIndex(index, HashingEmbedder(32))
    assert other.update() == 3
    models = {r[0] for r in index.query("SELECT model FROM memory_vectors")}
    assert models == {"flowloom-hashing-32"}
    smem.rebuild()
    assert vector_count(index) == doc_count(index) == 3
    assert {r[0] for r in index.query("SELECT model FROM memory_vectors")} == {
        "flowloom-hashing-256"
    }


def test_plain_memory_makes_no_vectors(memory: Memory, ledger: Ledger) -> None:
    observe(memory, "storage", "we chose postgresql")
    ix = MemoryIndex(ledger.store, ledger.log)
    try:
        assert vector_count(ix) == 0
    finally:
        ix.close()


# -- search ----------------------------------------------------------------------------


def test_semantic_search_finds_what_full_text_misses(smem: Memory) -> None:
    observe(smem, "storage", "we standardised on postgresql for every service")
    observe(smem, "queue", "kafka consumers reconnect after a broker restart")
    assert smem.search("postgres", all_branches=True, semantic=False) == []
    hits = smem.search("postgres", all_branches=True)  # semantic by default here
    assert hits[0].kind == "observation" and hits[0].id == "storage"
    assert "postgresql" in hits[0].snippet
    assert hits[0].score > 0
    # Full-text matches keep their marked snippets in the fused list.
    hits = smem.search("kafka", all_branches=True, limit=1)
    assert hits[0].id == "queue" and "«kafka»" in hits[0].snippet


def test_semantic_search_applies_filters(smem: Memory, ledger: Ledger) -> None:
    observe(smem, "storage", "postgresql replication lag")
    ledger.record("agent.prompt", body=b"postgresql replication setup", meta={"session": "s"})
    kinds = {h.kind for h in smem.search("postgres replica", all_branches=True)}
    assert {"observation", "prompt"} <= kinds
    only = smem.search("postgres replica", kinds=["prompt"], all_branches=True)
    assert [h.kind for h in only] == ["prompt"]
    assert smem.search("postgres", author="nobody", all_branches=True) == []


def test_hybrid_mode_reranks_full_text_candidates(smem: Memory, index: MemoryIndex) -> None:
    observe(smem, "storage", "postgresql replication lag", "postgresql backups run nightly")
    observe(smem, "queue", "kafka replication factor three")
    smem.sync()
    spec = SearchSpec(terms=parse_terms("postgresql replication"), limit=10)
    exact = VectorIndex(index, HashingEmbedder())
    hybrid = VectorIndex(index, HashingEmbedder(), brute_force_max=1)
    full = semantic_search(exact, "postgresql replication", spec)
    reranked = semantic_search(hybrid, "postgresql replication", spec)
    assert full[0].snippet == reranked[0].snippet
    assert "replication" in reranked[0].snippet
    # Hybrid sees only documents sharing a word with the query: not the entities'
    # type names, which brute force may still rank.
    assert {h.id for h in reranked} <= {"storage", "queue"}
    assert len(reranked) == 3


def test_pure_python_vector_math_ranks_like_numpy(
    smem: Memory, index: MemoryIndex, monkeypatch: pytest.MonkeyPatch
) -> None:
    observe(smem, "storage", "postgresql replication lag", "sqlite wal mode")
    observe(smem, "queue", "kafka replication factor three")
    smem.sync()
    spec = SearchSpec(terms=parse_terms("replicated postgres"), limit=10)
    vectors = VectorIndex(index, HashingEmbedder())
    first = vectors.nearest("replicated postgres", spec)
    monkeypatch.setattr(semantic, "_numpy", lambda: None)
    second = vectors.nearest("replicated postgres", spec)
    assert [d for d, _ in first] == [d for d, _ in second]
    assert [s for _, s in first] == pytest.approx([s for _, s in second], abs=1e-5)


# -- without the extra -----------------------------------------------------------------


def test_without_the_extra_semantic_is_a_clear_error(
    memory: Memory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, MODEL_PACKAGE, None)  # as if not installed
    observe(memory, "storage", "we chose postgresql")
    with pytest.raises(SemanticUnavailableError) as caught:
        memory.search("postgresql", all_branches=True, semantic=True)
    assert caught.value.exit_code == 5
    assert "'semantic' extra" in caught.value.message
    assert "flowloom[semantic]" in (caught.value.hint or "")
    assert [h.id for h in memory.search("postgresql", all_branches=True)] == ["storage"]


def _cli(tmp_path: Path, *args: str, hide_extra: bool) -> subprocess.CompletedProcess[str]:
    hide = f"import sys; sys.modules[{MODEL_PACKAGE!r}] = None; " if hide_extra else ""
    env = {
        **os.environ,
        "FLOWLOOM_HOME": str(tmp_path / "home"),
        "FLOWLOOM_DATABASE": str(tmp_path / "ledger.db"),
        "FLOWLOOM_PROJECT": "proj",
        "HOME": str(tmp_path),
        "GIT_CEILING_DIRECTORIES": str(tmp_path),
        "HF_HUB_OFFLINE": "1",
    }
    return subprocess.run(
        [
            sys.executable,
            "-c",
            f"{hide}import runpy; runpy.run_module('flowloom', run_name='__main__')",
            *args,
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def _fill(tmp_path: Path) -> None:
    from flowloom.services import open_store
    from tests.support.ledgers import make_ledger

    store = open_store(str(tmp_path / "ledger.db"))
    try:
        ledger = make_ledger(store, tmp_path / "keys")
        ledger.record(
            "agent.prompt", body=b"which database should the team server use", meta={"session": "s"}
        )
        ledger.record("agent.prompt", body=b"the cat sat on the mat", meta={"session": "s"})
    finally:
        store.close()


def test_cli_semantic_without_the_extra_exits_5(tmp_path: Path) -> None:
    _fill(tmp_path)
    result = _cli(tmp_path, "search", "--semantic", "database", hide_extra=True)
    assert result.returncode == 5, result.stderr
    assert "'semantic' extra" in result.stderr and "flowloom[semantic]" in result.stderr
    plain = _cli(tmp_path, "search", "database", hide_extra=True)
    assert plain.returncode == 0, plain.stderr
    assert "which database" in plain.stdout


# -- the real model (when the extra is installed) --------------------------------------


@needs_extra
def test_minilm_embeds_by_meaning() -> None:
    emb = semantic.load_embedder()
    assert emb.dimension == 384 and emb.model == semantic.MINILM
    query, close, far = emb.embed(
        ["Which database do we use?", "We chose PostgreSQL for storage.", "The cat sat on the mat."]
    )
    assert sum(q * q for q in query) == pytest.approx(1.0, abs=1e-5)

    def dot(a: list[float], b: list[float]) -> float:
        return sum(x * y for x, y in zip(a, b, strict=True))

    assert dot(query, close) > dot(query, far) + 0.2
    assert emb.embed(["Which database do we use?"])[0] == pytest.approx(query, abs=1e-6)


@needs_extra
def test_cli_semantic_with_the_model(tmp_path: Path) -> None:
    _fill(tmp_path)
    result = _cli(tmp_path, "search", "--semantic", "--json", "postgres", hide_extra=False)
    assert result.returncode == 0, result.stderr
    assert "which database" in result.stdout.splitlines()[0]
