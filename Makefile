# `make demo` and `make test` each bootstrap .venv on their own (Python 3.11+ and make only).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lab install clean lock

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -c 'import sys; sys.exit("Python 3.11+ is required, found " + sys.version.split()[0]) if sys.version_info < (3, 11) else None'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/mqtt-sim demo --out data/results

test: $(STAMP)
	$(BIN)/python -m pytest -q

# JupyterLab (the `lab` extra) in .venv, on 127.0.0.1 only, with the project's kernel (python3 of .venv)
LAB_PORT ?= 8888
$(VENV)/.lab-installed: $(STAMP)
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev,lab]'
	touch $@

lab: $(VENV)/.lab-installed
	$(BIN)/python -m jupyter lab --ip 127.0.0.1 --port $(LAB_PORT) --ServerApp.root_dir=notebooks \
		--MappingKernelManager.default_kernel_name=python3 $(if $(filter 0,$(shell id -u)),--allow-root)

# Re-pin the versions that `make` installs (run after changing dependencies).
lock:
	$(BIN)/python -m pip freeze --all --exclude-editable | grep -v -e '^-e' -e '^pip==' > constraints.txt

clean:
	rm -rf $(VENV) data/results/*.csv data/results/*.png
