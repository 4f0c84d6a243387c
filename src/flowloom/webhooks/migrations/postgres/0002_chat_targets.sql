-- Chat targets: a subscription's message format (CloudEvents, a Slack incoming webhook,
-- a Teams workflow webhook) and, for chat targets, their URL sealed (it is a credential).
ALTER TABLE webhook_subscriptions ADD COLUMN format TEXT NOT NULL DEFAULT 'cloudevents';

ALTER TABLE webhook_subscriptions ADD COLUMN sealed_url BYTEA;
