-- Email digests: when a person's next digest of a project is due (POSIX seconds).
ALTER TABLE webhook_subscriptions ADD COLUMN next_digest_at DOUBLE PRECISION NOT NULL DEFAULT 0;
