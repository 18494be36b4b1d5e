# Slussen: `make run` serves the demo on http://127.0.0.1:5000, `make test` runs every check.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test install lint typecheck pytest translations constraints bench clean audit

$(STAMP): pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "Slussen needs Python 3.11 or newer ($(PYTHON) is older)"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip setuptools
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/slussen init-db
	$(BIN)/slussen demo
	@echo "Slussen is starting on http://127.0.0.1:5000 (Ctrl-C stops it)"
	$(BIN)/slussen serve --host 127.0.0.1 --port 5000

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	$(BIN)/pytest

test: lint typecheck pytest

# Re-extract UI strings; then translate the new entries in slussen/translations/sv/.
translations: $(STAMP)
	$(BIN)/pybabel extract -F babel.cfg -k _l -k lazy_gettext --no-location --omit-header \
		--sort-output -o slussen/translations/messages.pot .
	$(BIN)/pybabel update -i slussen/translations/messages.pot -d slussen/translations \
		--no-location --omit-header --no-fuzzy-matching
	$(BIN)/pybabel compile -d slussen/translations

# Record the exact versions of a working install (run after changing dependencies).
constraints:
	$(BIN)/python -m pip freeze --exclude-editable | grep -v '^slussen' > constraints.txt

# Known vulnerabilities in the pinned set (constraints.txt), from PyPI's advisory database. Not part
# of `make test` (CI cannot reach the advisory service). A finding fails; an unreachable service is
# one line and exit 0.
audit: $(STAMP)
	$(BIN)/python -m pip install --quiet --upgrade pip setuptools
	$(BIN)/python -m pip install --quiet -e '.[audit]'
	@out=$$($(BIN)/pip-audit --requirement constraints.txt --no-deps --disable-pip --progress-spinner off 2>&1); \
	rc=$$?; echo "$$out"; \
	if [ $$rc -ne 0 ] && ! echo "$$out" | grep -q 'known vulnerabilit' && \
		echo "$$out" | grep -qiE 'connection|resolve|timed out|unreachable|max retries|network'; then \
		echo "The audit could not run: the advisory database cannot be reached ($$(echo "$$out" | grep -iE 'connection|resolve|timed out|unreachable|max retries|network' | head -n1 | cut -c1-160))."; \
		exit 0; \
	fi; \
	skipped=$$(echo "$$out" | grep -c 'could not be audited'); \
	if [ $$skipped -gt 0 ]; then \
		echo "The audit is incomplete: $$skipped pinned package(s) could not be looked up in the advisory database (unreachable from here?); any 'No known vulnerabilities' above covers only the others."; \
	fi; exit $$rc

bench: $(STAMP)
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) build dist *.egg-info
