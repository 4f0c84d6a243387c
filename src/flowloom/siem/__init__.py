"""SIEM: security-relevant ledger events streamed to a security team's tools.

Syslog (RFC 5424 over TCP or TLS, octet-counted), CEF, OCSF 1.x JSON, Splunk HEC and
Elastic bulk; each destination keeps a durable cursor per log, so delivery is at least
once and resumes after the last acknowledged entry (docs/integrations.md, "SIEM").
"""

from __future__ import annotations

__all__: list[str] = []
