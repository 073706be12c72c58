# Two commands for a fresh Linux machine (Python 3.11 or 3.12):
#   make demo   set up .venv, pseudo-label the bundled demo SEM and BF images with the shipped models, SEM morphometrics
#   make test   set up .venv and run the test suite (what CI runs)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.ads-synth-installed
DEMO_IMAGE := sub-rat8_sample-V915_SEM.png
BF_DEMO_IMAGE := bf_nerve_demo.png

.PHONY: demo test install clean-demo

install: $(STAMP)

$(STAMP): setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# AxonDeepSeg 5.5.0 chooses torch (<2.4), nnunetv2 (2.2.1) and numpy (<2); ~4 min and ~6.6 GB the first time.
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $@

demo: $(STAMP)
	mkdir -p demo_output
	cp docs/demo/$(DEMO_IMAGE) docs/demo/pixel_size_in_micrometer.txt demo_output/
	$(BIN)/axondeepseg -t SEM --pseudo tutor -i demo_output/$(DEMO_IMAGE) --overwrite
	cd demo_output && ../$(BIN)/axondeepseg_morphometrics -i $(DEMO_IMAGE)
	mkdir -p demo_output/bf
	cp docs/demo/bf/$(BF_DEMO_IMAGE) docs/demo/bf/pixel_size_in_micrometer.txt demo_output/bf/
	$(BIN)/axondeepseg -t BF --pseudo tutor -i demo_output/bf/$(BF_DEMO_IMAGE) --overwrite
	@echo "SEM pseudo labels and morphometrics are in demo_output/; bright-field pseudo labels in demo_output/bf/"

test: $(STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider -n 2 --dist loadgroup --no-loadscope-reorder tests

clean-demo:
	rm -rf demo_output
