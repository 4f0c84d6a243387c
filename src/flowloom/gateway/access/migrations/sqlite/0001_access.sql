-- Gateway access: virtual keys, provider keys (sealed), project budgets, daily spend.
-- Timestamps are UTC text 'YYYY-MM-DDTHH:MM:SS.ffffffZ'; days are 'YYYY-MM-DD'.
CREATE TABLE gateway_vkeys (
    id TEXT PRIMARY KEY,
    prefix TEXT NOT NULL UNIQUE,
    key_hash TEXT NOT NULL,
    name TEXT NOT NULL,
    owner_kind TEXT NOT NULL CHECK (owner_kind IN ('user', 'team', 'project')),
    owner TEXT NOT NULL,
    project TEXT,
    models TEXT,
    rpm INTEGER CHECK (rpm IS NULL OR rpm > 0),
    tpm INTEGER CHECK (tpm IS NULL OR tpm > 0),
    budget_usd REAL CHECK (budget_usd IS NULL OR budget_usd >= 0),
    period TEXT NOT NULL CHECK (period IN ('day', 'month')),
    created_at TEXT NOT NULL,
    expires_at TEXT,
    revoked_at TEXT
);
CREATE INDEX gateway_vkeys_project ON gateway_vkeys (project);

CREATE TABLE gateway_provider_keys (
    name TEXT PRIMARY KEY,
    sealed BLOB NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

CREATE TABLE gateway_project_budgets (
    project TEXT PRIMARY KEY,
    budget_usd REAL NOT NULL CHECK (budget_usd >= 0),
    period TEXT NOT NULL CHECK (period IN ('day', 'month')),
    updated_at TEXT NOT NULL
);

CREATE TABLE gateway_usage (
    day TEXT NOT NULL,
    key_id TEXT NOT NULL,
    project TEXT NOT NULL DEFAULT '',
    provider TEXT NOT NULL,
    model TEXT NOT NULL,
    requests INTEGER NOT NULL DEFAULT 0,
    input_tokens INTEGER NOT NULL DEFAULT 0,
    output_tokens INTEGER NOT NULL DEFAULT 0,
    cache_read_tokens INTEGER NOT NULL DEFAULT 0,
    cache_write_tokens INTEGER NOT NULL DEFAULT 0,
    cost_usd REAL NOT NULL DEFAULT 0,
    PRIMARY KEY (day, key_id, project, provider, model)
);
CREATE INDEX gateway_usage_key_day ON gateway_usage (key_id, day);
CREATE INDEX gateway_usage_project_day ON gateway_usage (project, day);
