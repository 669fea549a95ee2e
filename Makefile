# The two commands of the README: `make demo` and `make test`. Both set up
# everything they need on a fresh machine (idempotent), then run.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup demo test browser-deps postgres-deps messages

$(BIN)/gap: pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $(BIN)/gap

setup: $(BIN)/gap

# Debian's Chromium for the browser tests (Playwright drives it via executable_path;
# no Playwright browser download), plus a colour emoji font so ✅ ❌ render.
browser-deps:
	@command -v chromium >/dev/null 2>&1 && fc-list 2>/dev/null | grep -qi 'Noto Color Emoji' || \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-noto-color-emoji >/dev/null)

# PostgreSQL server binaries for the suite's throwaway cluster (tests/pg.py runs the database
# tests on SQLite and on PostgreSQL): Debian's postgresql package when no initdb is found.
postgres-deps:
	@command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null)

demo: setup
	$(BIN)/gap demo

test: setup browser-deps postgres-deps
	$(BIN)/python -m pytest -q

# Translations (game/i18n.py): every marked string into game/locales/messages.pot, then merged
# into each language's .po (translate the new entries; tests/test_i18n.py fails until they are).
KEYWORDS := -k _ -k N_ -k t:2 -k tn:2,3 -k ngettext:1,2 -k Invalid -k NotFound -k Conflict -k Expired -k Unavailable -k Banned -k SameAsAnswer
messages: setup
	$(BIN)/pybabel extract -F babel.cfg $(KEYWORDS) --no-wrap --sort-by-file --project GAP \
	  -o game/locales/messages.pot .
	$(BIN)/pybabel update -i game/locales/messages.pot -d game/locales -D messages --no-wrap --no-fuzzy-matching
