"""samconfig.toml: the three environments the docs promise, each linted, cached and deployable, and
every parameter it overrides is one template.yaml declares."""

from __future__ import annotations

import shlex
import tomllib

import pytest
from wan_relay_local.stack import Template

from tests.conftest import ROOT

CONFIG = tomllib.loads((ROOT / "samconfig.toml").read_text())


@pytest.mark.parametrize("environment", ["default", "dev", "prod"])
def test_each_environment_builds_cached_in_parallel_validates_with_lint_and_deploys(environment: str) -> None:
    env = CONFIG[environment]
    assert env["global"]["parameters"]["stack_name"].startswith("wan-relay")
    assert env["build"]["parameters"] == {"cached": True, "parallel": True}
    assert env["validate"]["parameters"]["lint"] is True
    deploy = env["deploy"]["parameters"]
    assert deploy["capabilities"] == "CAPABILITY_IAM"
    assert deploy["resolve_s3"] is True


def test_environments_deploy_separate_stacks_and_prod_confirms_its_changes() -> None:
    names = {CONFIG[e]["global"]["parameters"]["stack_name"] for e in ("default", "dev", "prod")}
    assert len(names) == 3
    assert CONFIG["prod"]["deploy"]["parameters"]["confirm_changeset"] is True


def test_parameter_overrides_name_only_template_parameters() -> None:
    declared = Template().doc["Parameters"]
    for environment in ("default", "dev", "prod"):
        overrides = CONFIG[environment]["deploy"]["parameters"].get("parameter_overrides", "")
        for pair in shlex.split(overrides):
            name, value = pair.split("=", 1)
            assert name in declared, f"{environment}: {name} is not a template parameter"
            allowed = declared[name].get("AllowedValues")
            if allowed:
                assert value in [str(v) for v in allowed], f"{environment}: {name}={value}"
