-- Shared quotas: rate-limit and budget use counted across gateway processes.
-- One row per scope ('rpm:<key>', 'tpm:<key>', 'usd:key:<key>:<period>', ...) is the lock
-- a lease takes; use is kept per bucket (a one-second slot, or a budget period).
CREATE TABLE gateway_quota_scopes (
    scope TEXT PRIMARY KEY,
    touched REAL NOT NULL
);

CREATE TABLE gateway_quota_use (
    scope TEXT NOT NULL,
    bucket INTEGER NOT NULL,
    amount REAL NOT NULL,
    newest REAL NOT NULL,
    PRIMARY KEY (scope, bucket)
);
