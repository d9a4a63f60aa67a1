# KMNIST Lab: `make run` starts the dashboard, `make test` runs the whole suite.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
SUBSET := $(abspath ../shared/data/kmnist-subset)
TMPDIR_FONT := $(abspath .font-build)
TEST_DATA_DIR := $(if $(KMNIST_DATA_DIR),$(KMNIST_DATA_DIR),$(SUBSET))
# make run: $KMNIST_DATA_DIR, else the offline subset when it sits beside the repo, else tfds.
RUN_DATA_DIR := $(if $(KMNIST_DATA_DIR),$(KMNIST_DATA_DIR),$(wildcard $(SUBSET)))

.PHONY: run test bench screenshots browser postgres font clean

$(VENV)/.installed: requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed requirements-dev.txt
	$(PY) -m pip install -q -r requirements-dev.txt
	touch $@

run: $(VENV)/.installed
	KMNIST_DATA_DIR=$(RUN_DATA_DIR) $(PY) -m streamlit run dashboard.py

# Debian's Chromium for the browser tests; Playwright's own browser download cannot work offline.
browser:
	@command -v chromium >/dev/null || { apt-get update -qq && apt-get install -y -qq chromium >/dev/null; }

# Debian's PostgreSQL for the sweep tests, which start a private cluster of their own in a temp folder.
postgres:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq postgresql >/dev/null; }

test: $(VENV)/.installed-dev browser postgres
	KMNIST_DATA_DIR=$(TEST_DATA_DIR) $(PY) -m pytest

bench: $(VENV)/.installed-dev browser
	KMNIST_DATA_DIR=$(TEST_DATA_DIR) $(PY) -m benchmarks

# README screenshots from a real server with real runs (the app serves its own hiragana font).
screenshots: $(VENV)/.installed-dev browser
	KMNIST_DATA_DIR=$(TEST_DATA_DIR) $(PY) tests/e2e/screenshots.py

# The hiragana font the pages serve: the hiragana block of Noto Sans JP (SIL OFL 1.1) from the npm
# registry, subset with fontTools. Its output is committed; run this only to make it again.
FONT_PKG := @fontsource/noto-sans-jp@5.3.0
font: $(VENV)/.installed-dev
	rm -rf $(TMPDIR_FONT) && mkdir -p $(TMPDIR_FONT)
	cd $(TMPDIR_FONT) && npm pack -q $(FONT_PKG) >/dev/null && tar xzf *.tgz
	$(VENV)/bin/pyftsubset $(TMPDIR_FONT)/package/files/noto-sans-jp-119-400-normal.woff2 --unicodes=U+3040-309F \
		--flavor=woff2 --output-file=static/kmnist-hiragana.woff2
	cp $(TMPDIR_FONT)/package/LICENSE static/OFL-NotoSansJP.txt

clean:
	rm -rf $(VENV) test-artifacts .pytest_cache
