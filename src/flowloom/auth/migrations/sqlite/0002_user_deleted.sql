-- A deleted user keeps its row (and id) with the personal data removed; this says when.
ALTER TABLE directory_users ADD COLUMN deleted_at TEXT;
