-- Access reviews: campaigns (a project's or the instance's roles, reviewed by a date) and
-- their lines, one per person x project role, each certified or revoked with an
-- electronic signature. Timestamps are UTC text 'YYYY-MM-DDTHH:MM:SS.ffffffZ'; facts is
-- the JSON snapshot taken when the campaign opened (last activity, API and virtual keys).
CREATE TABLE directory_review_campaigns (
    id TEXT PRIMARY KEY,
    scope TEXT NOT NULL,
    period_start TEXT NOT NULL,
    period_end TEXT NOT NULL,
    due_at TEXT NOT NULL,
    dormant_days INTEGER NOT NULL CHECK (dormant_days > 0),
    opened_by TEXT NOT NULL,
    opened_at TEXT NOT NULL,
    opened_entry INTEGER,
    closed_by TEXT,
    closed_at TEXT,
    closed_entry INTEGER
);
CREATE INDEX directory_review_campaigns_scope ON directory_review_campaigns (scope, opened_at);

CREATE TABLE directory_review_lines (
    campaign_id TEXT NOT NULL REFERENCES directory_review_campaigns (id) ON DELETE CASCADE,
    line INTEGER NOT NULL,
    user_id TEXT NOT NULL,
    project TEXT NOT NULL,
    role TEXT NOT NULL,
    team TEXT,
    facts TEXT NOT NULL,
    decision TEXT CHECK (decision IS NULL OR decision IN ('certify', 'revoke')),
    reason TEXT,
    decided_by TEXT,
    decided_at TEXT,
    signature INTEGER,
    entry INTEGER,
    PRIMARY KEY (campaign_id, line)
);
