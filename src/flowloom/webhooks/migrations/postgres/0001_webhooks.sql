-- Outbound webhooks: subscriptions, their durable delivery queue, and every attempt.
-- A subscription's cursor is the next ledger index of its project not yet queued.
CREATE TABLE webhook_subscriptions (
    id TEXT PRIMARY KEY,
    project TEXT NOT NULL,
    url TEXT NOT NULL,
    kinds TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    include_bodies INTEGER NOT NULL DEFAULT 0,
    sealed_secret BYTEA NOT NULL,
    enabled INTEGER NOT NULL DEFAULT 1,
    cursor BIGINT NOT NULL,
    created_by TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

CREATE INDEX webhook_subscriptions_project ON webhook_subscriptions (project);

CREATE TABLE webhook_deliveries (
    id BIGSERIAL PRIMARY KEY,
    subscription_id TEXT NOT NULL,
    project TEXT NOT NULL,
    message_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    ledger_index BIGINT,
    payload TEXT,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at DOUBLE PRECISION NOT NULL,
    lease_until DOUBLE PRECISION NOT NULL DEFAULT 0,
    redelivery_of BIGINT,
    created_at TEXT NOT NULL,
    finished_at TEXT
);

CREATE INDEX webhook_deliveries_queue ON webhook_deliveries (subscription_id, status, id);

CREATE TABLE webhook_attempts (
    id BIGSERIAL PRIMARY KEY,
    delivery_id BIGINT NOT NULL,
    attempt INTEGER NOT NULL,
    at TEXT NOT NULL,
    status_code INTEGER,
    error TEXT,
    duration_ms INTEGER NOT NULL
);

CREATE INDEX webhook_attempts_delivery ON webhook_attempts (delivery_id, attempt);
