# Two commands for a fresh machine: `make run` and `make test`. Everything else is a helper.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test test-fast install browser wordpress clients lint typecheck bench peers clean

run: $(STAMP)
	$(BIN)/commentguard serve

test: $(STAMP) browser wordpress clients
	$(BIN)/python -m pytest -n 2 --dist loadgroup

# Everything but the tests marked slow (browsers, WordPress, the reliability runs): for the
# edit-test loop; `make test` is the run that counts.
test-fast: $(STAMP) clients
	$(BIN)/python -m pytest -n 2 --dist loadgroup -m "not slow"

# The console's browser tests drive Debian's chromium through Playwright (no browser download
# by Playwright): install it when missing. Needs root, as CI runs; without chromium those
# tests fail saying so.
browser:
	@command -v chromium >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium; }

# The WordPress test (tests/service/akismet/test_akismet_wordpress.py) runs Debian's WordPress
# and the Akismet plugin it ships on a private MariaDB, served by php -S: install them when missing
# (the theme is the wordpress package's recommendation). Needs root, as CI runs; without them
# that test fails saying so.
WORDPRESS_PACKAGES := wordpress wordpress-theme-twentytwentythree mariadb-server php-cli php-mysql
wordpress:
	@dpkg -s $(WORDPRESS_PACKAGES) >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(WORDPRESS_PACKAGES); }

# docs/callbacks.md's receivers are tested in PHP and Node.js as well as Python, and the
# README's commands (tests/docs/test_readme.py) use curl: Debian's php-cli, nodejs and curl,
# installed when missing (root, as for chromium).
clients:
	@command -v curl >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends curl; }
	@command -v php >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends php-cli; }
	@command -v node >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nodejs; }

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .

typecheck: $(STAMP)
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python bench/classifier.py

# commentguard beside Rspamd on the same comments and machine (installs Rspamd when missing).
peers: $(STAMP)
	$(BIN)/python bench/peers.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
