"""Git as FlowLoom reads it: the repository, commit trailers, links, signers, the published log."""
