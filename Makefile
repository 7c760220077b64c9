# obsportal: the README's two commands are `make run` and `make test`.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PORTAL := $(VENV)/bin/portal
APT_PACKAGES := prometheus prometheus-pushgateway prometheus-alertmanager prometheus-node-exporter \
                postgresql-15-partman chromium chromium-driver openssh-server rsync \
                slurm-wlm munge victoria-metrics
PYTEST_ARGS ?=

.PHONY: run test lint format bootstrap system-packages bench clean

## run: the whole local stack with demo data; portal on http://127.0.0.1:8050 (Ctrl-C stops it)
## (anonymous visitors may read the local demo; PORTAL_ANONYMOUS=none make run requires login)
run: bootstrap
	PORTAL_ANONYMOUS=$${PORTAL_ANONYMOUS:-viewer} $(PORTAL) run

## test: every test against real services started by the test session
test: bootstrap
	$(PY) -m pytest $(PYTEST_ARGS)

## lint: ruff (lint + format check) and mypy on portal/ and collectors/
lint: bootstrap
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

format: bootstrap
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

bootstrap: system-packages $(VENV)/.installed

## system-packages: Debian packages for the real services (only as root, only when missing)
system-packages:
	@missing=""; for p in $(APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing Debian packages:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null \
	      || echo "warning: could not install$$missing (tests needing them will say so)"; \
	  else \
	    echo "note: missing Debian packages:$$missing (run 'sudo make system-packages')"; \
	  fi; \
	fi

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

bench: bootstrap
	for b in bench/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	-$(PORTAL) stack down
	rm -rf var .pytest_cache .mypy_cache .ruff_cache
