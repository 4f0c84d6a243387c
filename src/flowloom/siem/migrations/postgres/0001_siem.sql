-- SIEM destinations (per project; the instance's reserved project streams every log)
-- and each destination's cursor per log: the next ledger index it has not yet delivered.
CREATE TABLE siem_destinations (
    project TEXT NOT NULL,
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    format TEXT NOT NULL,
    target TEXT NOT NULL,
    options TEXT NOT NULL,
    sealed BYTEA,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (project, name)
);
CREATE TABLE siem_cursors (
    project TEXT NOT NULL,
    name TEXT NOT NULL,
    log TEXT NOT NULL,
    next_index BIGINT NOT NULL,
    delivered BIGINT NOT NULL DEFAULT 0,
    last_error TEXT,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (project, name, log)
);
