-- FlowLoom ledger schema, SQLite dialect, migration 1.
CREATE TABLE entries (
    log TEXT NOT NULL,
    idx INTEGER NOT NULL,
    envelope BLOB NOT NULL,
    kind TEXT NOT NULL,
    PRIMARY KEY (log, idx)
) WITHOUT ROWID;
CREATE INDEX entries_kind ON entries (log, kind, idx);

CREATE TABLE nodes (
    log TEXT NOT NULL,
    level INTEGER NOT NULL,
    idx INTEGER NOT NULL,
    hash BLOB NOT NULL,
    PRIMARY KEY (log, level, idx)
) WITHOUT ROWID;

CREATE TABLE checkpoints (
    log TEXT NOT NULL,
    size INTEGER NOT NULL,
    root BLOB NOT NULL,
    note TEXT NOT NULL,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    PRIMARY KEY (log, size)
) WITHOUT ROWID;

CREATE TABLE bodies (
    digest TEXT PRIMARY KEY,
    log TEXT NOT NULL,
    salt BLOB NOT NULL,
    content BLOB NOT NULL,
    nonce BLOB,
    subject TEXT
);
-- Partial: most bodies have no data subject and should not pay for this index.
CREATE INDEX bodies_subject ON bodies (log, subject) WHERE subject IS NOT NULL;

CREATE TABLE subject_keys (
    log TEXT NOT NULL,
    subject TEXT NOT NULL,
    wrapped_key BLOB NOT NULL,
    PRIMARY KEY (log, subject)
) WITHOUT ROWID;

-- The ledger is append-only: the database itself refuses edits.
CREATE TRIGGER entries_append_only_update BEFORE UPDATE ON entries
BEGIN SELECT RAISE(ABORT, 'flowloom: ledger entries are append-only'); END;
CREATE TRIGGER entries_append_only_delete BEFORE DELETE ON entries
BEGIN SELECT RAISE(ABORT, 'flowloom: ledger entries are append-only'); END;
CREATE TRIGGER nodes_append_only_update BEFORE UPDATE ON nodes
BEGIN SELECT RAISE(ABORT, 'flowloom: tree nodes are append-only'); END;
CREATE TRIGGER nodes_append_only_delete BEFORE DELETE ON nodes
BEGIN SELECT RAISE(ABORT, 'flowloom: tree nodes are append-only'); END;
CREATE TRIGGER checkpoints_append_only_update BEFORE UPDATE ON checkpoints
BEGIN SELECT RAISE(ABORT, 'flowloom: checkpoints are append-only'); END;
CREATE TRIGGER checkpoints_append_only_delete BEFORE DELETE ON checkpoints
BEGIN SELECT RAISE(ABORT, 'flowloom: checkpoints are append-only'); END;
CREATE TRIGGER bodies_no_update BEFORE UPDATE ON bodies
BEGIN SELECT RAISE(ABORT, 'flowloom: bodies are never edited, only erased'); END;
