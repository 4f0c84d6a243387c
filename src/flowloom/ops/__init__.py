"""Operating an installation: backups of the database, and restores that refuse rollbacks."""
