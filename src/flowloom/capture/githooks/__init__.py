"""Git integration: hooks, trailers, links, replication through refs."""
