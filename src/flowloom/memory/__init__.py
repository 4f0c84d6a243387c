"""Project memory: a knowledge graph and full-text search, projected from the ledger."""
