"""Compliance: the control catalogue, the automated checks, reports, retention and erasure.

`flowloom.compliance.model` holds the result model every renderer reads;
`flowloom.compliance.assess.assess` runs one framework's checks over a period.
"""
