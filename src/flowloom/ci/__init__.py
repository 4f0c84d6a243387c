"""CI evidence: test results (JUnit XML) bound to the tested tree and the CI run's identity.

`junit` reads the files test runners write, `identity` proves which CI run is recording
(an OIDC token verified against its issuer's keys), `evidence` turns both into the
``test.result`` event, and `templates` writes the CI jobs `flowloom init --ci` offers.
"""
