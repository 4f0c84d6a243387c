-- Semantic search (optional): one embedding per indexed document, float32 little-endian.
CREATE TABLE memory_vectors (
    doc BIGINT PRIMARY KEY REFERENCES memory_docs (id) ON DELETE CASCADE,
    log TEXT NOT NULL,
    model TEXT NOT NULL,
    vec BYTEA NOT NULL
);
CREATE INDEX memory_vectors_log ON memory_vectors (log, model, doc);

-- How far embedding has gone: documents of the log with id <= upto were looked at
-- (ids come from a sequence and are never reused here).
CREATE TABLE memory_vector_state (
    log TEXT NOT NULL,
    model TEXT NOT NULL,
    upto BIGINT NOT NULL,
    PRIMARY KEY (log, model)
);
