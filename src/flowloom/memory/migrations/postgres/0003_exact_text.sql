-- The exact text of an observation when the indexed body differs from it (a NUL, which
-- PostgreSQL text cannot hold, or text past the indexed length), as a JSON string.
ALTER TABLE memory_docs ADD COLUMN exact TEXT;
-- The index is a cache of the ledger: drop it so the whole ledger is projected again
-- and observations recorded before this column get their exact text.
DELETE FROM memory_doc_files;
DELETE FROM memory_vectors;
DELETE FROM memory_vector_state;
DELETE FROM memory_docs;
DELETE FROM memory_relations;
DELETE FROM memory_entities;
DELETE FROM memory_commits;
DELETE FROM memory_state;
