-- The tile API: per-project publicity, and witness cosignatures on checkpoints.
CREATE TABLE tlog_settings (
    project TEXT PRIMARY KEY,
    public INTEGER NOT NULL CHECK (public IN (0, 1)),
    updated_at TEXT NOT NULL
);

CREATE TABLE tlog_cosignatures (
    project TEXT NOT NULL,
    size BIGINT NOT NULL,
    root TEXT NOT NULL,
    witness TEXT NOT NULL,
    line TEXT NOT NULL,
    signed_at BIGINT NOT NULL,
    PRIMARY KEY (project, size, root, witness)
);
