# Two entry points that work on a fresh machine (Python 3.11, CPU):
#   make main   set up, then regenerate the figures (quick profile) and show the engines at work
#   make test   set up, then run the default test suite
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup main test test-slow bench bench-quick paper clean

setup: $(STAMP)

# torch is pinned and installed first so no CUDA build is pulled in by a dependency.
$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

main: $(STAMP)
	$(VENV)/bin/convtheory figures --profile quick
	$(VENV)/bin/convtheory predictions --profile quick
	$(VENV)/bin/convtheory demo

test: $(STAMP)
	$(PY) -m pytest -q -n 2 --dist loadfile

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow

# The paper: figures and tables come from `make main`; missing ones show as a note in the PDF.
# Needs TeX Live (Debian: latexmk texlive-latex-base texlive-latex-recommended texlive-fonts-recommended).
paper:
	cd paper && latexmk -pdf -interaction=nonstopmode -halt-on-error paper.tex

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis

# Each script checks correctness before it times anything and writes benchmarks/results/NAME.{json,md}.
bench: $(STAMP)
	benchmarks/peer_maml.sh
	$(PY) benchmarks/engines.py
	$(PY) benchmarks/memory.py
	$(PY) benchmarks/sweeps.py
	$(PY) benchmarks/fewshot_throughput.py

bench-quick: $(STAMP)
	benchmarks/peer_maml.sh --quick
	$(PY) benchmarks/engines.py --quick
	$(PY) benchmarks/memory.py --quick
	$(PY) benchmarks/sweeps.py --quick
	$(PY) benchmarks/fewshot_throughput.py --quick
