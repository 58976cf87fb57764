"""What a team installing wan-relay from a catalogue relies on: one version everywhere, the license,
a change log, a listing the Serverless Application Repository accepts, the capabilities the docs ask a
user to acknowledge, and a `make package` that does what docs/deploy.md says."""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import cfnlint.data.schemas
import pytest
from cfnlint.decode import cfn_yaml
from wan_relay import __version__
from wan_relay.models import SCHEMA_VERSION

from tests.conftest import ROOT

TEMPLATE = ROOT / "template.yaml"
CHANGELOG = ROOT / "CHANGELOG.md"
DEPLOY_DOC = ROOT / "docs" / "deploy.md"
UPGRADING_DOC = ROOT / "docs" / "upgrading.md"
#: the template of the last release (0.1.0, `git show 635bc1e:template.yaml`): what an upgrade starts from
LAST_RELEASE_TEMPLATE = ROOT / "tests" / "contract" / "template-0.1.0.yaml"
SAM = ROOT / ".venv-sam" / "bin"
#: semver.org's regular expression for a version (2.0.0)
SEMVER = re.compile(
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)"
    r"(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$"
)
#: SHA-256 of the Apache License 2.0 as apache.org publishes it (LICENSE-2.0.txt)
APACHE_2_0_SHA256 = "cfc7749b96f63bd31c3c42b5c471bf756814053e847c10f3eb003417bc523d30"
#: the capabilities SAR asks a user to acknowledge, by resource type (SAR developer guide, "Acknowledging
#: Application Capabilities")
CAPABILITY_OF = {
    **dict.fromkeys(("AWS::IAM::Group", "AWS::IAM::InstanceProfile", "AWS::IAM::Policy", "AWS::IAM::Role"),
                    "CAPABILITY_IAM"),
    **dict.fromkeys(("AWS::Lambda::LayerVersionPermission", "AWS::Lambda::Permission", "AWS::Events::EventBusPolicy",
                     "AWS::ApplicationAutoScaling::ScalingPolicy", "AWS::S3::BucketPolicy", "AWS::SQS::QueuePolicy",
                     "AWS::SNS::TopicPolicy"), "CAPABILITY_RESOURCE_POLICY"),
    "AWS::Serverless::Application": "CAPABILITY_AUTO_EXPAND",
}
#: the IAM properties that name a resource, which makes the capability CAPABILITY_NAMED_IAM
IAM_NAMES = ("RoleName", "GroupName", "InstanceProfileName", "ManagedPolicyName", "UserName")


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return json.loads(json.dumps(cfn_yaml.load(str(TEMPLATE))))


@pytest.fixture(scope="module")
def listing(template: dict[str, Any]) -> dict[str, Any]:
    return template["Metadata"]["AWS::ServerlessRepo::Application"]


def transformed(template_path: Path) -> dict[str, dict[str, Any]]:
    """The resources CloudFormation creates: the template through SAM's own transform (samtranslator, from
    the SAM CLI's venv that `make check-template` installs), local artifact paths standing in for S3."""
    python = SAM / "python"
    assert python.exists(), "the SAM CLI's venv is missing: make check-template installs it"
    script = """
import json, sys
from cfnlint.decode import cfn_yaml
from samtranslator.translator.transform import transform

class NoManagedPolicies:
    def load(self):
        return {}

template = json.loads(json.dumps(cfn_yaml.load(sys.argv[1])))
for resource in template["Resources"].values():
    for key in ("CodeUri", "ContentUri", "DefinitionUri"):
        if isinstance(resource.get("Properties", {}).get(key), str):
            resource["Properties"][key] = "s3://artifacts/key"
out = transform(template, {}, NoManagedPolicies())
json.dump({k: {"Type": v["Type"], "Properties": v.get("Properties", {})} for k, v in out["Resources"].items()},
          sys.stdout, default=str)
"""
    env = {**os.environ, "AWS_DEFAULT_REGION": "us-east-1"}
    done = subprocess.run([str(python), "-c", script, str(template_path)], capture_output=True, text=True, env=env,
                          timeout=120, check=True)
    return json.loads(done.stdout)


@pytest.fixture(scope="module")
def deployed_types() -> dict[str, dict[str, Any]]:
    return transformed(TEMPLATE)


# --- one version ------------------------------------------------------------------------------


def released_versions() -> list[str]:
    return re.findall(r"^## \[(\d[^\]]*)\] - \d{4}-\d{2}-\d{2}$", CHANGELOG.read_text(), re.MULTILINE)


def test_the_version_is_set_once_and_the_package_template_and_changelog_report_it(listing):
    assert SEMVER.match(__version__), "SAR takes a semantic version"
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" not in project["project"] and "version" in project["project"]["dynamic"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "wan_relay.__version__"}
    assert importlib.metadata.version("wan-relay") == __version__, "reinstall: make (the stamp follows __init__.py)"
    assert listing["SemanticVersion"] == __version__, "run: make template-sync"
    assert released_versions()[0] == __version__


def test_the_template_s_version_is_rewritten_from_the_package():
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        import sync_template_version
    finally:
        sys.path.remove(str(ROOT / "tools"))
    text = TEMPLATE.read_text()
    assert sync_template_version.synced(text) == text
    stale = text.replace(f"SemanticVersion: {__version__}", "SemanticVersion: 9.9.9")
    assert sync_template_version.synced(stale) == text


# --- license and change log -------------------------------------------------------------------


def test_the_license_is_the_apache_2_0_text_the_package_and_the_listing_name(listing):
    assert hashlib.sha256((ROOT / "LICENSE").read_bytes()).hexdigest() == APACHE_2_0_SHA256
    assert tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["license"] == "Apache-2.0"
    assert listing["SpdxLicenseId"] == "Apache-2.0"
    assert (TEMPLATE.parent / listing["LicenseUrl"]).resolve() == ROOT / "LICENSE"


def test_the_changelog_keeps_a_changelog_newest_first_with_the_event_schema_of_each_release():
    text = CHANGELOG.read_text()
    headings = re.findall(r"^## \[([^\]]+)\]", text, re.MULTILINE)
    assert headings[0] == "Unreleased"
    versions = released_versions()
    assert versions == headings[1:] and all(SEMVER.match(v) for v in versions)
    keys = [tuple(int(p) for p in v.split("-")[0].split(".")) for v in versions]
    assert keys == sorted(keys, reverse=True), "newest first"
    sections = re.split(r"^## ", text, flags=re.MULTILINE)[1:]
    schemas = [re.search(r"^Event schema: `schema_version` (\d+\.\d+)", s, re.MULTILINE) for s in sections]
    assert all(schemas), "every release names the schema_version of its events"
    assert schemas[0].group(1) == SCHEMA_VERSION, "the change log's newest entry names the schema the code emits"
    for subsection in re.findall(r"^### (.+)$", text, re.MULTILINE):
        assert subsection in {"Added", "Changed", "Deprecated", "Removed", "Fixed", "Security"}


def test_every_schema_version_has_its_upgrade_note():
    noted = set(re.findall(r"^\| (\d+\.\d+) \| ", UPGRADING_DOC.read_text(), re.MULTILINE))
    emitted = set(re.findall(r"^Event schema: `schema_version` (\d+\.\d+)", CHANGELOG.read_text(), re.MULTILINE))
    assert SCHEMA_VERSION in noted and emitted <= noted


# --- the Serverless Application Repository ----------------------------------------------------


def test_the_listing_has_every_field_sar_asks_for_within_its_limits(listing):
    # SAR's metadata rules (AWS SAM developer guide, "AWS SAM template Metadata section properties")
    assert re.fullmatch(r"[a-zA-Z0-9\-]{1,140}", listing["Name"])
    assert 1 <= len(listing["Description"]) <= 256
    assert len(listing["Author"]) <= 127 and re.fullmatch(r"[a-z0-9](([a-z0-9]|-(?!-))*[a-z0-9])?", listing["Author"])
    assert 1 <= len(listing["Labels"]) <= 10
    assert all(re.fullmatch(r"[a-zA-Z0-9+\-_:/@]{1,127}", label) for label in listing["Labels"])
    for key in ("LicenseUrl", "ReadmeUrl"):  # local files `sam package` uploads, at most 5 MB
        path = TEMPLATE.parent / listing[key]
        assert path.is_file() and path.stat().st_size <= 5 * 1024 * 1024
    # SAR reads the listing as it is: an intrinsic function would be published as its text
    assert all(isinstance(value, str | list) and "Fn::" not in json.dumps(value) and "Ref" not in json.dumps(value)
               for value in listing.values())


def supported_by_sar() -> set[str]:
    lines = (Path(__file__).parent / "sar_supported_resources.txt").read_text().splitlines()
    return {line for line in lines if line and not line.startswith("#")}


#: types the stack uses that the archived list predates: docs/deploy.md asks a publisher to confirm them on
#: the live list first (SAR refuses a template with a type it does not support, whatever its Condition)
TO_CONFIRM_ON_THE_LIVE_LIST = {"AWS::Events::EventBus"}  # the bus of the stack's own (CreateEventBus)


def test_every_resource_type_before_and_after_the_transform_is_one_sar_supports(template, deployed_types):
    types = {r["Type"] for r in template["Resources"].values()} | {r["Type"] for r in deployed_types.values()}
    assert types - supported_by_sar() == TO_CONFIRM_ON_THE_LIVE_LIST
    section = DEPLOY_DOC.read_text().split("## Publish to the Serverless Application Repository", 1)[1]
    assert all(f"`{kind}`" in section.split("\n## ", 1)[0] for kind in TO_CONFIRM_ON_THE_LIVE_LIST)


def test_the_capabilities_the_docs_ask_to_acknowledge_are_exactly_the_ones_the_stack_needs(deployed_types):
    needed = {CAPABILITY_OF[r["Type"]] for r in deployed_types.values() if r["Type"] in CAPABILITY_OF}
    named = [i for i, r in deployed_types.items() if any(k in r["Properties"] for k in IAM_NAMES)]
    if named:
        needed = (needed - {"CAPABILITY_IAM"}) | {"CAPABILITY_NAMED_IAM"}
    section = DEPLOY_DOC.read_text().split("### Capabilities a user acknowledges", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"^\| `(CAPABILITY_[A-Z_]+)` \|", section, re.MULTILINE))
    assert documented == needed
    command = re.search(r"--capabilities ((?:CAPABILITY_[A-Z_]+ ?)+)", section)
    assert command and set(command.group(1).split()) == needed


# --- make package -----------------------------------------------------------------------------


def make(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["make", "--no-print-directory", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=60, check=False)


def test_make_package_without_a_bucket_stops_before_doing_anything():
    for target in ("package", "publish"):
        done = make("-n", target)
        assert done.returncode != 0
        assert f"make {target} needs S3_BUCKET=" in done.stderr
        assert "sam " not in done.stdout


def test_make_package_builds_then_packages_to_the_bucket_with_flags_the_sam_cli_knows():
    done = make("-n", "publish", "S3_BUCKET=my-artifacts")
    assert done.returncode == 0, done.stderr
    commands = [line for line in done.stdout.replace("\\\n", " ").splitlines() if "/sam " in line]
    verbs = [line.split("/sam ", 1)[1].split()[0] for line in commands]
    assert verbs == ["build", "package", "publish"]
    package = commands[1]
    assert "--s3-bucket my-artifacts" in package and f"--s3-prefix wan-relay/{__version__}" in package
    assert f"--semantic-version {__version__}" in commands[2]
    assert "--template-file .aws-sam/build/template.yaml" in package, "package what sam build built"
    for verb, line in zip(verbs, commands, strict=True):
        known = subprocess.run([str(SAM / "sam"), verb, "--help"], capture_output=True, text=True, timeout=60,
                               env={**os.environ, "SAM_CLI_TELEMETRY": "0"}, check=True).stdout
        for flag in re.findall(r"(--[a-z0-9-]+)", line.split(f"/sam {verb}", 1)[1]):
            assert re.search(rf"{flag}\b", known), f"sam {verb} has no {flag}"


# --- the listing's addresses, given when publishing ------------------------------------------------


def test_the_listing_gets_its_home_page_and_source_code_addresses_when_published(listing):
    from tools.sar_listing import with_addresses

    published = with_addresses(TEMPLATE.read_text(), source_code_url="https://github.com/acme/wan-relay")

    parsed = json.loads(json.dumps(cfn_yaml.loads(published)))
    assert parsed["Metadata"]["AWS::ServerlessRepo::Application"] == {
        **listing, "HomePageUrl": "https://github.com/acme/wan-relay", "SourceCodeUrl": "https://github.com/acme/wan-relay"}
    assert {k: v for k, v in parsed.items() if k != "Metadata"} == {
        k: v for k, v in json.loads(json.dumps(cfn_yaml.load(str(TEMPLATE)))).items() if k != "Metadata"}
    home = with_addresses(TEMPLATE.read_text(), source_code_url="https://github.com/acme/wan-relay",
                          home_page_url="https://acme.example/wan-relay")
    assert 'HomePageUrl: "https://acme.example/wan-relay"' in home


@pytest.mark.parametrize("address", ["http://github.com/acme/wan-relay", "github.com/acme", "https://", 'https://a/"b'])
def test_an_address_that_is_not_public_https_is_refused(address):
    import argparse

    from tools.sar_listing import with_addresses

    with pytest.raises(argparse.ArgumentTypeError):
        with_addresses(TEMPLATE.read_text(), source_code_url=address)


def test_make_package_with_a_source_code_address_builds_the_template_that_carries_it():
    done = make("-n", "package", "S3_BUCKET=my-artifacts", "SOURCE_CODE_URL=https://github.com/acme/wan-relay")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.replace("\\\n", " ").splitlines()
    assert "tools/sar_listing.py --source-code-url \"https://github.com/acme/wan-relay\"" in lines[0]
    assert "--template-file template.publish.yaml" in lines[1] and "/sam build" in lines[1]


# --- upgrades ---------------------------------------------------------------------------------


def create_only_properties(resource_type: str) -> list[str]:
    """The properties CloudFormation can set only when it creates a resource of this type (the registry
    schema's `createOnlyProperties`, as cfn-lint ships the schemas): changing one replaces the resource."""
    schemas = Path(cfnlint.data.schemas.__file__).parent
    providers = json.loads((schemas / "providers" / "us-east-1.json").read_text())
    schema = json.loads((schemas / "resources" / f"{providers[resource_type]}.json").read_text())
    return sorted({pointer.split("/")[2] for pointer in schema.get("createOnlyProperties", [])})


def test_an_upgrade_from_the_last_release_replaces_no_resource(deployed_types):
    """An upgrade is a stack update: a resource whose logical id goes, or whose create-only property
    changes, is replaced. The tables and the bucket would lose their data; the state machine its executions
    in flight, which DeleteStateMachine terminates at their next transition, with no completion event and
    their task locks left standing (a name given to it in a later version did exactly that)."""
    released = transformed(LAST_RELEASE_TEMPLATE)
    replaced = []
    for logical_id, before in released.items():
        after = deployed_types.get(logical_id)
        if after is None or after["Type"] != before["Type"]:
            if before["Type"] != "AWS::Lambda::LayerVersion":  # a new version each release, by design
                replaced.append(f"{logical_id} ({before['Type']}) is gone")
            continue
        for name in create_only_properties(before["Type"]):
            if before["Properties"].get(name) != after["Properties"].get(name):
                replaced.append(f"{logical_id}.{name}: {before['Properties'].get(name)!r} -> "
                                f"{after['Properties'].get(name)!r}")
    assert replaced == []
