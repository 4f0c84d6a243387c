"""Code hosts and CI systems: where reviewers see FlowLoom's verdict (docs/integrations.md).

GitHub (check runs, a pull-request comment kept up to date, commit statuses, a signed
webhook receiver), GitLab (commit statuses, merge-request notes, a token-checked
webhook receiver) and Bitbucket Cloud (build statuses). Outbound calls go through a
durable queue in the server's database, so a code host that is down gets them later.
"""
