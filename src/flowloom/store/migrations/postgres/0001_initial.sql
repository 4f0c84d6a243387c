-- FlowLoom ledger schema, PostgreSQL dialect, migration 1.
CREATE TABLE entries (
    log TEXT NOT NULL,
    idx BIGINT NOT NULL,
    envelope BYTEA NOT NULL,
    kind TEXT NOT NULL,
    PRIMARY KEY (log, idx)
);
CREATE INDEX entries_kind ON entries (log, kind, idx);

CREATE TABLE nodes (
    log TEXT NOT NULL,
    level INTEGER NOT NULL,
    idx BIGINT NOT NULL,
    hash BYTEA NOT NULL,
    PRIMARY KEY (log, level, idx)
);

CREATE TABLE checkpoints (
    log TEXT NOT NULL,
    size BIGINT NOT NULL,
    root BYTEA NOT NULL,
    note TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (log, size)
);

CREATE TABLE bodies (
    digest TEXT PRIMARY KEY,
    log TEXT NOT NULL,
    salt BYTEA NOT NULL,
    content BYTEA NOT NULL,
    nonce BYTEA,
    subject TEXT
);
-- Partial: most bodies have no data subject and should not pay for this index.
CREATE INDEX bodies_subject ON bodies (log, subject) WHERE subject IS NOT NULL;

CREATE TABLE subject_keys (
    log TEXT NOT NULL,
    subject TEXT NOT NULL,
    wrapped_key BYTEA NOT NULL,
    PRIMARY KEY (log, subject)
);

-- The ledger is append-only: the database itself refuses edits.
CREATE FUNCTION flowloom_refuse_edit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'flowloom: % rows are append-only (% refused)', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;
CREATE TRIGGER entries_append_only BEFORE UPDATE OR DELETE ON entries
    FOR EACH ROW EXECUTE FUNCTION flowloom_refuse_edit();
CREATE TRIGGER entries_no_truncate BEFORE TRUNCATE ON entries
    FOR EACH STATEMENT EXECUTE FUNCTION flowloom_refuse_edit();
CREATE TRIGGER nodes_append_only BEFORE UPDATE OR DELETE ON nodes
    FOR EACH ROW EXECUTE FUNCTION flowloom_refuse_edit();
CREATE TRIGGER nodes_no_truncate BEFORE TRUNCATE ON nodes
    FOR EACH STATEMENT EXECUTE FUNCTION flowloom_refuse_edit();
CREATE TRIGGER checkpoints_append_only BEFORE UPDATE OR DELETE ON checkpoints
    FOR EACH ROW EXECUTE FUNCTION flowloom_refuse_edit();
CREATE TRIGGER checkpoints_no_truncate BEFORE TRUNCATE ON checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION flowloom_refuse_edit();
CREATE TRIGGER bodies_no_update BEFORE UPDATE ON bodies
    FOR EACH ROW EXECUTE FUNCTION flowloom_refuse_edit();
