"""Virtual key strings: the "flv_<prefix>_<secret>" format, generating and checking keys.

The format, hashing and the constant-time check are `flowloom.auth.keystrings`'s,
shared with the directory's API keys; these are its ``flv`` names.
"""

from __future__ import annotations

from flowloom.auth.keystrings import GeneratedKey, KeyFormat, hash_key
from flowloom.auth.keystrings import digests_match as matches

__all__ = ["VKEY_PREFIX", "GeneratedVirtualKey", "generate", "hash_secret", "matches", "parse"]

_FORMAT = KeyFormat("flv")
VKEY_PREFIX = _FORMAT.lead
GeneratedVirtualKey = GeneratedKey
hash_secret = hash_key
generate = _FORMAT.generate
parse = _FORMAT.parse
