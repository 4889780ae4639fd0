# Developer entry points; each delegates to dev.py, which builds .venv from requirements.lock.
# Pass arguments with ARGS, e.g. make test ARGS="-k migrations" or make serve ARGS="--help".
PYTHON ?= python3
ARGS ?=

.PHONY: check test serve lock

check:
	$(PYTHON) dev.py check

test:
	$(PYTHON) dev.py test $(ARGS)

serve:
	$(PYTHON) dev.py serve $(ARGS)

lock:
	$(PYTHON) dev.py lock
