"""External anchors: checkpoints vouched for by parties outside the log's database.

`interface` defines `Anchor` and `AnchorRecord`; `tsa` (RFC 3161 time stamps), `s3`
(S3 Object Lock in compliance mode) and `witness` (C2SP tlog-witness cosignatures)
implement it; `book` records anchors as `checkpoint.anchor` events and checks them
against the log. Submodules are imported on use: each pulls its own libraries.
"""
