-- Semantic search (optional): one embedding per indexed document, float32 little-endian.
CREATE TABLE memory_vectors (
    doc INTEGER PRIMARY KEY,
    log TEXT NOT NULL,
    model TEXT NOT NULL,
    vec BLOB NOT NULL
);
CREATE INDEX memory_vectors_log ON memory_vectors (log, model, doc);

-- How far embedding has gone: documents of the log with id <= upto were looked at.
CREATE TABLE memory_vector_state (
    log TEXT NOT NULL,
    model TEXT NOT NULL,
    upto INTEGER NOT NULL,
    PRIMARY KEY (log, model)
) WITHOUT ROWID;

-- A document's vector goes with it (erasure, forget, rebuild). SQLite reuses the id of
-- a deleted last row, so deleting the last document moves the mark back below it.
CREATE TRIGGER memory_docs_ad_vectors AFTER DELETE ON memory_docs BEGIN
    DELETE FROM memory_vectors WHERE doc = old.id;
    UPDATE memory_vector_state SET upto = old.id - 1
        WHERE upto >= old.id AND old.id > (SELECT COALESCE(MAX(id), 0) FROM memory_docs);
END;
