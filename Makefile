# The README's two commands: `make demo` and `make test`. Each sets up .venv first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch and torchvision are installed first, as a matching pair (override for another CUDA/CPU build).
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
PLUGINS := $(wildcard plugins/det-plugin-*)
PYTEST_ARGS ?= -n 2

.PHONY: setup demo test clean

setup: $(BIN)/.installed

$(BIN)/.installed: pyproject.toml $(wildcard plugins/*/pyproject.toml)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet $(TORCH_SPEC)
	$(BIN)/python -m pip install --quiet -e ".[dev]" $(foreach p,$(PLUGINS),-e $(p))
	touch $@

demo: setup
	$(BIN)/sdk run examples/quickstart/recipe.toml
	$(BIN)/sdk predict runs/quickstart/best.pt examples/quickstart/images --out runs/quickstart/predictions
	@echo ""
	@echo "Done. Metrics: runs/quickstart/metrics.json"
	@echo "Plots (loss, mAP, sample predictions): runs/quickstart/plots/"
	@echo "Predictions drawn on images: runs/quickstart/predictions/"

test: setup
	$(BIN)/python -m pytest $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) runs build *.egg-info
