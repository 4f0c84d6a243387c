-- Project memory index (a projection of the ledger; rebuildable from it at any time).
CREATE TABLE memory_state (
    log TEXT PRIMARY KEY,
    consumed BIGINT NOT NULL,
    last_leaf BYTEA
);

CREATE TABLE memory_entities (
    log TEXT NOT NULL,
    name TEXT NOT NULL,
    entity_type TEXT NOT NULL,
    seq BIGINT NOT NULL,
    entry BIGINT NOT NULL,
    commit_sha TEXT,
    session TEXT,
    ts TEXT NOT NULL,
    PRIMARY KEY (log, name)
);
CREATE INDEX memory_entities_seq ON memory_entities (log, seq);

CREATE TABLE memory_relations (
    log TEXT NOT NULL,
    source TEXT NOT NULL,
    target TEXT NOT NULL,
    relation_type TEXT NOT NULL,
    seq BIGINT NOT NULL,
    entry BIGINT NOT NULL,
    commit_sha TEXT,
    session TEXT,
    PRIMARY KEY (log, source, target, relation_type)
);
CREATE INDEX memory_relations_target ON memory_relations (log, target);
CREATE INDEX memory_relations_seq ON memory_relations (log, seq);

CREATE TABLE memory_docs (
    id BIGSERIAL PRIMARY KEY,
    log TEXT NOT NULL,
    kind TEXT NOT NULL,
    ref TEXT NOT NULL,
    title TEXT NOT NULL,
    body TEXT NOT NULL,
    author TEXT,
    author_alt TEXT,
    ts TEXT NOT NULL,
    entry BIGINT NOT NULL,
    commit_sha TEXT,
    session TEXT,
    digest TEXT,
    tsv TSVECTOR GENERATED ALWAYS AS (
        setweight(to_tsvector('english', title), 'A')
        || setweight(to_tsvector('english', body), 'B')
    ) STORED
);
CREATE INDEX memory_docs_ref ON memory_docs (log, kind, ref);
CREATE INDEX memory_docs_digest ON memory_docs (digest) WHERE digest IS NOT NULL;
CREATE INDEX memory_docs_entry ON memory_docs (log, entry);
CREATE INDEX memory_docs_tsv ON memory_docs USING GIN (tsv);

CREATE TABLE memory_doc_files (
    doc BIGINT NOT NULL REFERENCES memory_docs (id) ON DELETE CASCADE,
    path TEXT NOT NULL,
    PRIMARY KEY (doc, path)
);
CREATE INDEX memory_doc_files_path ON memory_doc_files (path, doc);

CREATE TABLE memory_commits (
    log TEXT NOT NULL,
    sha TEXT NOT NULL,
    PRIMARY KEY (log, sha)
);
