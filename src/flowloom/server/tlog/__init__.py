"""The public tile API's state: which logs are public, and witnesses' cosignatures."""
