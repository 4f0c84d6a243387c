-- Project memory index (a projection of the ledger; rebuildable from it at any time).
CREATE TABLE memory_state (
    log TEXT PRIMARY KEY,
    consumed INTEGER NOT NULL,
    last_leaf BLOB
);

CREATE TABLE memory_entities (
    log TEXT NOT NULL,
    name TEXT NOT NULL,
    entity_type TEXT NOT NULL,
    seq INTEGER NOT NULL,
    entry INTEGER NOT NULL,
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
    seq INTEGER NOT NULL,
    entry INTEGER NOT NULL,
    commit_sha TEXT,
    session TEXT,
    PRIMARY KEY (log, source, target, relation_type)
);
CREATE INDEX memory_relations_target ON memory_relations (log, target);
CREATE INDEX memory_relations_seq ON memory_relations (log, seq);

CREATE TABLE memory_docs (
    id INTEGER PRIMARY KEY,
    log TEXT NOT NULL,
    kind TEXT NOT NULL,
    ref TEXT NOT NULL,
    title TEXT NOT NULL,
    body TEXT NOT NULL,
    author TEXT,
    author_alt TEXT,
    ts TEXT NOT NULL,
    entry INTEGER NOT NULL,
    commit_sha TEXT,
    session TEXT,
    digest TEXT
);
CREATE INDEX memory_docs_ref ON memory_docs (log, kind, ref);
CREATE INDEX memory_docs_digest ON memory_docs (digest) WHERE digest IS NOT NULL;
CREATE INDEX memory_docs_entry ON memory_docs (log, entry);
-- Covering index for search filters: checking a match reads this, not the text.
CREATE INDEX memory_docs_filter
    ON memory_docs (id, log, kind, author, author_alt, ts, commit_sha, session);

CREATE TABLE memory_doc_files (
    doc INTEGER NOT NULL,
    path TEXT NOT NULL,
    PRIMARY KEY (doc, path)
) WITHOUT ROWID;
CREATE INDEX memory_doc_files_path ON memory_doc_files (path, doc);

CREATE TABLE memory_commits (
    log TEXT NOT NULL,
    sha TEXT NOT NULL,
    PRIMARY KEY (log, sha)
) WITHOUT ROWID;

CREATE VIRTUAL TABLE memory_fts USING fts5 (
    title, body,
    content = 'memory_docs', content_rowid = 'id',
    tokenize = 'porter unicode61 remove_diacritics 2'
);

CREATE TRIGGER memory_docs_ai AFTER INSERT ON memory_docs BEGIN
    INSERT INTO memory_fts (rowid, title, body) VALUES (new.id, new.title, new.body);
END;

CREATE TRIGGER memory_docs_ad AFTER DELETE ON memory_docs BEGIN
    INSERT INTO memory_fts (memory_fts, rowid, title, body)
        VALUES ('delete', old.id, old.title, old.body);
    DELETE FROM memory_doc_files WHERE doc = old.id;
END;

CREATE TRIGGER memory_docs_au AFTER UPDATE ON memory_docs BEGIN
    INSERT INTO memory_fts (memory_fts, rowid, title, body)
        VALUES ('delete', old.id, old.title, old.body);
    INSERT INTO memory_fts (rowid, title, body) VALUES (new.id, new.title, new.body);
END;
