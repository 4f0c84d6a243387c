"""The CI jobs `flowloom init --ci github|gitlab|jenkins|bitbucket` writes.

Every job does the same four things, in the platform's own words:

1. installs *the FlowLoom the repository was set up with* (`install_spec`): a pinned git
   commit of the source it came from, or the exact version from the index it came from —
   never an unpinned ``pip install flowloom``;
2. runs the team's tests, which write JUnit XML into ``test-results/``;
3. records them (`flowloom ci record`, a ``test.result`` bound to the tested tree and the
   run's OIDC identity where the platform gives one) and runs the gate with
   ``--record`` (``ci.result``) — both only when ``FLOWLOOM_DATABASE`` names the team
   ledger; with only the published log (``FLOWLOOM_VKEY``) the gate reads it and records
   nothing;
4. keeps the gate's own JUnit (``test-reports/flowloom-gate.xml``) and the tests' as the
   job's test report / artifact.

The job fails when any of these fails, after all of them ran. The shell part is POSIX
sh, shared by all four (`job_script`), so one test runs it for each.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Final
from urllib.parse import unquote, urlsplit, urlunsplit

from flowloom.errors import InputError

__all__ = [
    "GATE_JUNIT",
    "KINDS",
    "TEST_RESULTS",
    "InstallSpec",
    "install_spec",
    "job_script",
    "pinned",
    "render",
    "write_ci",
]

KINDS: Final = ("github", "gitlab", "jenkins", "bitbucket")
TEST_RESULTS: Final = "test-results"
GATE_JUNIT: Final = "test-reports/flowloom-gate.xml"
PLACEHOLDER_TEST_COMMAND: Final = (
    'echo "FlowLoom: put your test command here, writing JUnit XML into '
    f'{TEST_RESULTS}/ (or run flowloom init --ci ... --ci-test-command CMD)" >&2; exit 1'
)

_SCP_LIKE = re.compile(r"^(?P<user>[A-Za-z0-9._-]+)@(?P<host>[A-Za-z0-9.-]+):(?P<path>[^/].*)$")


@dataclass(frozen=True)
class InstallSpec:
    """What CI installs (a pip requirement) and how it was chosen, for the user."""

    requirement: str
    how: str


def pinned(url: str, commit: str) -> str:
    """The pip requirement for FlowLoom at `commit` of the git repository at `url`."""
    return f"flowloom @ git+{url}@{commit}"


def _git(directory: Path, *args: str) -> str | None:
    done = subprocess.run(
        ["git", "-C", str(directory), *args], capture_output=True, text=True, check=False
    )
    return done.stdout.strip() if done.returncode == 0 else None


def _public_url(url: str) -> str | None:
    """`url` as pip's ``git+`` takes it, without credentials; None for a local path."""
    found = _SCP_LIKE.match(url)
    if found:
        return f"ssh://{found['user']}@{found['host']}/{found['path']}"
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http", "ssh", "git") or not parts.hostname:
        return None
    host = parts.hostname + (f":{parts.port}" if parts.port else "")
    user = f"{unquote(parts.username)}@" if parts.scheme == "ssh" and parts.username else ""
    return urlunsplit((parts.scheme, user + host, parts.path, "", ""))


def _from_checkout(source: Path) -> InstallSpec:
    """A pinned commit of the checkout an editable install runs from, if CI can fetch it."""
    commit = _git(source, "rev-parse", "HEAD")
    if commit is None:
        raise InputError(
            f"FlowLoom runs from {source}, which is not a git checkout CI could fetch",
            hint="give --ci-install SPEC (a pip requirement CI can install)",
        )
    if _git(source, "status", "--porcelain", "--untracked-files=no"):
        raise InputError(
            f"FlowLoom runs from {source}, which has uncommitted changes: CI cannot install "
            "that version",
            hint="commit and push them, or give --ci-install SPEC",
        )
    remotes = (_git(source, "branch", "-r", "--contains", commit) or "").split()
    for remote in dict.fromkeys(r.split("/", 1)[0] for r in remotes if "->" not in r):
        url = _git(source, "remote", "get-url", remote)
        public = _public_url(url) if url else None
        if public is not None:
            return InstallSpec(
                pinned(public, commit),
                f"the commit your FlowLoom runs from ({commit[:12]}), as pushed to {remote}",
            )
    raise InputError(
        f"FlowLoom runs from {source} at {commit[:12]}, which no remote holds: CI could "
        "not fetch it",
        hint="push that commit, or give --ci-install SPEC",
    )


def install_spec(
    explicit: str | None = None,
    *,
    distribution: Callable[[str], metadata.Distribution] = metadata.distribution,
) -> InstallSpec:
    """The pip requirement that installs, in CI, the FlowLoom running here."""
    if explicit is not None:
        requirement = explicit.strip()
        if not requirement or any(ord(c) < 32 for c in requirement):
            raise InputError("--ci-install must be one pip requirement on one line")
        return InstallSpec(requirement, "as given (--ci-install)")
    try:
        dist = distribution("flowloom")
    except metadata.PackageNotFoundError:
        raise InputError(
            "FlowLoom is not installed as a package here: cannot tell CI which version to use",
            hint="give --ci-install SPEC",
        ) from None
    raw = dist.read_text("direct_url.json")
    if not raw:
        return InstallSpec(
            f"flowloom=={dist.version}",
            f"version {dist.version}, from the package index your FlowLoom came from",
        )
    try:
        direct = json.loads(raw)
    except ValueError:
        direct = {}
    url = str(direct.get("url", ""))
    vcs = direct.get("vcs_info")
    if isinstance(vcs, Mapping) and vcs.get("vcs") == "git" and vcs.get("commit_id"):
        public = _public_url(url)
        if public is not None:
            commit = str(vcs["commit_id"])
            return InstallSpec(
                pinned(public, commit),
                f"the commit your FlowLoom was installed from ({commit[:12]})",
            )
    if url.startswith("file://") and isinstance(direct.get("dir_info"), Mapping):
        return _from_checkout(Path(unquote(urlsplit(url).path)))
    raise InputError(
        f"FlowLoom was installed from {url or 'an unknown place'}, which CI cannot reach",
        hint="give --ci-install SPEC (e.g. a wheel's https:// URL, or flowloom==VERSION "
        "from your index)",
    )


# -- the shared script ------------------------------------------------------------------

_RECORD_AND_GATE = f"""\
status=0
if [ -n "$FLOWLOOM_DATABASE" ]; then
  if [ -n "$FLOWLOOM_LOG_KEY" ]; then
    flowloom log restore-key || status=1
  fi
  flowloom ci record --junit '{TEST_RESULTS}/*.xml' || status=1
  set -- --record "$@"
elif [ -n "$FLOWLOOM_VKEY" ]; then
  echo "FlowLoom: no FLOWLOOM_DATABASE: the test results are not recorded" >&2
  set -- --ledger-ref refs/flowloom/log "$@"
else
  echo "FlowLoom: set FLOWLOOM_DATABASE (the team ledger) or FLOWLOOM_VKEY" >&2
  status=1
fi
flowloom check --junit {GATE_JUNIT} "$@" || status=1
[ "$tests" = 0 ] || status=1
exit $status
"""

_RANGES: Final = {
    "github": """\
zero=0000000000000000000000000000000000000000
if [ -n "$BASE_REF" ]; then
  set -- "origin/$BASE_REF..HEAD"
elif [ -n "$BEFORE" ] && [ "$BEFORE" != "$zero" ] \\
    && git cat-file -e "$BEFORE^{commit}" 2>/dev/null; then
  set -- "$BEFORE..$GITHUB_SHA"
elif [ "$GITHUB_REF_NAME" != "$DEFAULT_BRANCH" ]; then
  set -- "origin/$DEFAULT_BRANCH..HEAD"
else
  set -- --all
fi
""",
    "gitlab": """\
zero=0000000000000000000000000000000000000000
if [ -n "$CI_MERGE_REQUEST_DIFF_BASE_SHA" ]; then
  set -- "$CI_MERGE_REQUEST_DIFF_BASE_SHA..HEAD"
elif [ -n "$CI_COMMIT_BEFORE_SHA" ] && [ "$CI_COMMIT_BEFORE_SHA" != "$zero" ] \\
    && git cat-file -e "$CI_COMMIT_BEFORE_SHA^{commit}" 2>/dev/null; then
  set -- "$CI_COMMIT_BEFORE_SHA..$CI_COMMIT_SHA"
elif [ "$CI_COMMIT_BRANCH" != "$CI_DEFAULT_BRANCH" ]; then
  git fetch --no-tags origin "$CI_DEFAULT_BRANCH"
  set -- "FETCH_HEAD..HEAD"
else
  set -- --all
fi
""",
    "jenkins": """\
export FLOWLOOM_BRANCH="${FLOWLOOM_BRANCH:-${CHANGE_TARGET:-$BRANCH_NAME}}"
if [ -n "$CHANGE_TARGET" ]; then
  git fetch --no-tags origin "$CHANGE_TARGET"
  set -- "FETCH_HEAD..HEAD"
elif [ -n "$GIT_PREVIOUS_SUCCESSFUL_COMMIT" ] \\
    && git cat-file -e "$GIT_PREVIOUS_SUCCESSFUL_COMMIT^{commit}" 2>/dev/null; then
  set -- "$GIT_PREVIOUS_SUCCESSFUL_COMMIT..HEAD"
else
  set -- --all
fi
""",
    "bitbucket": """\
export FLOWLOOM_BRANCH="${FLOWLOOM_BRANCH:-${BITBUCKET_PR_DESTINATION_BRANCH:-$BITBUCKET_BRANCH}}"
if [ -n "$BITBUCKET_PR_DESTINATION_BRANCH" ]; then
  git fetch --no-tags origin "$BITBUCKET_PR_DESTINATION_BRANCH"
  set -- "FETCH_HEAD..HEAD"
else
  set -- --all
fi
""",
}


def job_script(kind: str, test_command: str | None) -> str:
    """The job's shell (POSIX sh): run the tests, record them, run the gate."""
    command = (test_command or "").strip() or PLACEHOLDER_TEST_COMMAND
    if "\n" in command:
        raise InputError("--ci-test-command must be one line (a script can hold the rest)")
    tests = (
        f"mkdir -p {TEST_RESULTS} test-reports\n"
        "tests=0\n"
        f"( {command} ) || tests=1\n"
        "git fetch --no-tags origin '+refs/flowloom/*:refs/flowloom/*' || true\n"
    )
    return tests + _RANGES[kind] + _RECORD_AND_GATE


def _indent(text: str, spaces: int) -> str:
    pad = " " * spaces
    return "".join(pad + line if line.strip() else line for line in text.splitlines(True))


_HEADER = """\
{comment} FlowLoom, written by `flowloom init --ci {kind}`: runs the tests, records their
{comment} results for the tested tree (flowloom ci record: test.result, with this run's
{comment} identity), and runs the gate (flowloom check --record: every pushed commit linked
{comment} to an approved decision). Local hooks can be skipped; this job cannot.
{comment}
{comment} FLOWLOOM_INSTALL pins the FlowLoom this repository was set up with ({how}).
{comment} FLOWLOOM_DATABASE: the team ledger's postgresql:// URL (a secret); recording also
{comment} needs the log's signing key: the job restores it from the FLOWLOOM_LOG_KEY secret
{comment} (`flowloom log restore-key`, checked against FLOWLOOM_VKEY). Without the database,
{comment} set only FLOWLOOM_VKEY (`flowloom log vkey`): the gate then reads the log published
{comment} in git and records nothing. Put your test command in the script; it writes
{comment} JUnit XML into {results}/.
"""


def _header(kind: str, spec: InstallSpec, comment: str = "#") -> str:
    return _HEADER.format(comment=comment, kind=kind, how=spec.how, results=TEST_RESULTS)


def _github(spec: InstallSpec, script: str) -> str:
    return (
        _header("github", spec)
        + f"""name: FlowLoom
on:
  push:
  pull_request:
permissions:
  contents: read
  id-token: write  # this run's OIDC token: proves which run recorded the results
jobs:
  flowloom:
    runs-on: ubuntu-latest
    env:
      FLOWLOOM_INSTALL: {json.dumps(spec.requirement)}
    steps:
      - uses: actions/checkout@v4
        with:
          fetch-depth: 0
      - uses: actions/setup-python@v5
        with:
          python-version: "3.11"
      - name: Install FlowLoom
        run: python -m pip install "$FLOWLOOM_INSTALL"
      - name: Tests, test evidence and the FlowLoom gate
        env:
          FLOWLOOM_DATABASE: ${{{{ secrets.FLOWLOOM_DATABASE }}}}
          FLOWLOOM_LOG_KEY: ${{{{ secrets.FLOWLOOM_LOG_KEY }}}}
          FLOWLOOM_VKEY: ${{{{ vars.FLOWLOOM_VKEY }}}}
          BEFORE: ${{{{ github.event.before }}}}
          BASE_REF: ${{{{ github.base_ref }}}}
          DEFAULT_BRANCH: ${{{{ github.event.repository.default_branch }}}}
        shell: sh
        run: |
{_indent(script, 10)}      - name: Keep the JUnit reports
        if: ${{{{ !cancelled() }}}}
        uses: actions/upload-artifact@v4
        with:
          name: junit
          path: |
            {GATE_JUNIT}
            {TEST_RESULTS}/
"""
    )


def _gitlab(spec: InstallSpec, script: str) -> str:
    return (
        _header("gitlab", spec)
        + f"""flowloom:
  stage: test
  image: python:3.11
  variables:
    GIT_DEPTH: "0"
    FLOWLOOM_INSTALL: {json.dumps(spec.requirement)}
  id_tokens:
    FLOWLOOM_ID_TOKEN:  # this job's OIDC token: proves which job recorded the results
      aud: flowloom
  rules:
    - if: $CI_PIPELINE_SOURCE == "merge_request_event"
    - if: $CI_COMMIT_BRANCH
  script:
    - python -m pip install "$FLOWLOOM_INSTALL"
    - |
{_indent(script, 6)}  artifacts:
    when: always
    paths:
      - {GATE_JUNIT}
      - {TEST_RESULTS}/
    reports:
      junit:
        - {GATE_JUNIT}
        - {TEST_RESULTS}/*.xml
"""
    )


def _bitbucket(spec: InstallSpec, script: str) -> str:
    return (
        _header("bitbucket", spec)
        + f"""image: python:3.11
clone:
  depth: full
definitions:
  steps:
    - step: &flowloom
        name: Tests, test evidence and the FlowLoom gate
        oidc: true  # BITBUCKET_STEP_OIDC_TOKEN: proves which step recorded the results
        script:
          - export FLOWLOOM_INSTALL={_sh_quote(spec.requirement)}
          # The step's token is used when the repository variable FLOWLOOM_CI_AUDIENCE
          # holds the workspace's OIDC audience (Repository settings, OpenID Connect).
          - if [ -z "$FLOWLOOM_CI_AUDIENCE" ]; then unset BITBUCKET_STEP_OIDC_TOKEN; fi
          - python -m pip install "$FLOWLOOM_INSTALL"
          - |
{_indent(script, 12)}pipelines:
  default:
    - step: *flowloom
  pull-requests:
    "**":
      - step: *flowloom
"""
    )


def _groovy_single(text: str) -> str:
    """`text` inside a Groovy '...' string."""
    return text.replace("\\", "\\\\").replace("'", "\\'")


def _groovy(text: str) -> str:
    return text.replace("\\", "\\\\").replace("'''", "\\'\\'\\'")


def _jenkins(spec: InstallSpec, script: str) -> str:
    return (
        _header("jenkins", spec, comment="//")
        + f"""pipeline {{
  agent any
  environment {{
    FLOWLOOM_INSTALL = '{_groovy_single(spec.requirement)}'
    FLOWLOOM_DATABASE = credentials('flowloom-database')
    FLOWLOOM_LOG_KEY = credentials('flowloom-log-key')
  }}
  stages {{
    stage('FlowLoom') {{
      steps {{
        sh '''#!/bin/sh
python3 -m venv .flowloom-venv
. .flowloom-venv/bin/activate
python -m pip install "$FLOWLOOM_INSTALL"
{_groovy(script)}'''
      }}
    }}
  }}
  post {{
    always {{
      junit allowEmptyResults: true, testResults: '{GATE_JUNIT}, {TEST_RESULTS}/*.xml'
    }}
  }}
}}
"""
    )


def _sh_quote(text: str) -> str:
    return "'" + text.replace("'", "'\"'\"'") + "'"


_PATHS: Final = {
    "github": ".github/workflows/flowloom.yml",
    "gitlab": ".gitlab-ci.yml",
    "jenkins": "Jenkinsfile",
    "bitbucket": "bitbucket-pipelines.yml",
}

_RENDER: Final = {
    "github": _github,
    "gitlab": _gitlab,
    "jenkins": _jenkins,
    "bitbucket": _bitbucket,
}


def render(kind: str, spec: InstallSpec, test_command: str | None = None) -> str:
    """The CI file for `kind`, installing `spec`, running `test_command`."""
    if kind not in _RENDER:
        raise InputError(f"unknown CI {kind!r}: use {', '.join(KINDS)}")
    return _RENDER[kind](spec, job_script(kind, test_command))


def write_ci(
    repo_top: Path, kind: str, spec: InstallSpec, test_command: str | None = None
) -> list[tuple[Path, str]]:
    """Write the CI file for `kind`; returns (path, what happened) pairs.

    An existing file that differs is left alone: it may be the team's own. GitLab,
    Jenkins and Bitbucket have one file per repository: when it exists, FlowLoom's goes
    under `.flowloom/` and the result says how to take it in.
    """
    text = render(kind, spec, test_command)
    main = repo_top / _PATHS[kind]
    if kind == "github" or not main.exists():
        return [_write_if_absent(main, text)]
    snippet = repo_top / ".flowloom" / Path(_PATHS[kind]).name.lstrip(".")
    path, action = _write_if_absent(snippet, text)
    if "flowloom ci record" in main.read_text("utf-8", errors="replace"):
        return [(path, action)]
    how = {
        "gitlab": "add to .gitlab-ci.yml:\ninclude:\n  - local: .flowloom/gitlab-ci.yml",
        "jenkins": "merge its stage and post step into your Jenkinsfile",
        "bitbucket": "merge its step into your bitbucket-pipelines.yml",
    }[kind]
    return [(path, f"{action}; {how}")]


def _write_if_absent(path: Path, text: str) -> tuple[Path, str]:
    if path.exists():
        same = path.read_text("utf-8", errors="replace") == text
        return path, "unchanged" if same else "exists, left as is (delete it to regenerate)"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, "utf-8")
    return path, "created"
