"""Decision records: what was decided, why, by whom, approved by whom."""
