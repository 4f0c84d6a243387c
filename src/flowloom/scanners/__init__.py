"""Security scanners: SARIF 2.1.0 results bound to the scanned tree and to decisions.

`flowloom scan ingest FILE.sarif` validates the file against the SARIF 2.1.0 schema
(OASIS, shipped in `schemas/`), binds each result to the tree that was scanned and to
the decision behind the flagged line (the `why` walk), and records a `scan.result`
event that the ISO 27001 A.8.29 and SSDF PW.7/PW.8 checks read.
"""

from __future__ import annotations

__all__: list[str] = []
