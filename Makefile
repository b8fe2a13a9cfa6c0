.PHONY: run test lint bench setup

run:            ## set up (idempotent) and start the Streamlit app
	bash scripts/setup.sh
	.venv/bin/python -m streamlit run app.py

test:           ## set up with test tools (idempotent) and run the whole test suite, slow tests included
	bash scripts/setup.sh --dev
	.venv/bin/python -m pytest

lint:
	.venv/bin/python -m ruff check lib views app.py tests bench training

bench:
	bash scripts/setup.sh
	.venv/bin/python -m bench
