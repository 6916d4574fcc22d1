# One-word entries: `make demo` (install + convert the bundled example), `make test` (the suite).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.modelport-installed

.PHONY: install demo test typecheck fuzz bench conformance fixtures clean

install: $(STAMP)

# The tested stack of shared/STACK.md, pinned by constraints.txt. Two pip calls: tensorflowjs and
# onnx2torch declare requirements that cannot resolve beside onnx2tf 1.29 (see STACK.md), so they
# are installed without their dependencies; modelport stubs the parts they would need.
$(STAMP): pyproject.toml constraints.txt modelport/targets/tfjs_runner/package-lock.json \
		$(wildcard modelport/toolchains/*/requirements.lock)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=24" 
	$(BIN)/python -m pip install -c constraints.txt torch==2.13.0 onnx2tf==1.29.24 tf2onnx==1.17.0 \
		jax==0.6.2 jaxlib==0.6.2 tensorflow-hub==0.16.1 importlib_resources "setuptools<81" onnxscript \
		click rich "pytest<9" matplotlib==3.11.2 xmlschema==4.3.2 mypy==2.4.1 \
		hypothesis==6.170.15 pytest-xdist==3.8.0 transformers==5.23.0 ray==2.58.0
	$(BIN)/python -m pip install -c constraints.txt --no-deps tensorflowjs==4.22.0 onnx2torch==1.5.15
	$(BIN)/python -m pip install -c constraints.txt --no-deps --no-build-isolation -e .
	# The TF.js runner's Node packages, exactly as locked (pure JS: nothing native is downloaded).
	npm ci --prefix modelport/targets/tfjs_runner --no-audit --no-fund --loglevel=error
	# Converters in their own environments (docs/toolchains.md), where their Python exists.
	$(BIN)/modelport toolchain install --defaults
	touch $(STAMP)

demo: install
	$(BIN)/modelport convert examples/tiny_classifier.pt2 --to all -o modelport-out/demo \
		--report modelport-out/demo/report.json

# The suite: the type check of modelport/ (mypy, configured in pyproject.toml), then pytest.
test: install typecheck
	$(BIN)/python -m pytest

typecheck: install
	$(BIN)/python -m mypy

# The fuzz test with many more mutants per format than the suite's 20.
fuzz: install
	MODELPORT_FUZZ_EXAMPLES=$${MODELPORT_FUZZ_EXAMPLES:-500} $(BIN)/python -m pytest tests/e2e/test_fuzz.py

bench: install
	$(BIN)/python benchmarks/startup.py
	$(BIN)/python benchmarks/convert_overhead.py
	$(BIN)/python benchmarks/to_all.py

# ONNX node tests through every target (about 45 minutes on 2 cores): the CSV and the README table.
conformance: install
	$(BIN)/python benchmarks/conformance.py --jobs 2 --readme

fixtures: install
	$(BIN)/python fixtures/make_fixtures.py

clean:
	rm -rf $(VENV) modelport-out fixtures/out .pytest_cache
