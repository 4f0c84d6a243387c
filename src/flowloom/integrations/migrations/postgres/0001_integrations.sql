-- Code-host integrations: per-project settings (secrets sealed) and the outbound queue.
-- Timestamps are UTC text 'YYYY-MM-DDTHH:MM:SS.ffffffZ'.
CREATE TABLE integration_configs (
    project TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('github', 'gitlab', 'bitbucket')),
    settings TEXT NOT NULL,
    sealed BYTEA,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (project, kind)
);

CREATE TABLE integration_outbox (
    id BIGSERIAL PRIMARY KEY,
    project TEXT NOT NULL,
    kind TEXT NOT NULL,
    op TEXT NOT NULL,
    dedupe TEXT NOT NULL,
    body TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending', 'delivered', 'superseded', 'dead')),
    attempts INTEGER NOT NULL DEFAULT 0,
    next_at TEXT NOT NULL,
    last_error TEXT,
    result TEXT,
    created_at TEXT NOT NULL,
    delivered_at TEXT
);
CREATE INDEX integration_outbox_due ON integration_outbox (state, next_at);
CREATE INDEX integration_outbox_dedupe ON integration_outbox (project, kind, dedupe, state);
