-- Webhook deliveries already recorded (GitHub's X-GitHub-Delivery), so a replayed
-- signed request is not recorded twice.
CREATE TABLE integration_seen (
    kind TEXT NOT NULL,
    delivery TEXT NOT NULL,
    received_at TEXT NOT NULL,
    PRIMARY KEY (kind, delivery)
);
