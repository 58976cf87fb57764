"""What the stack asks AWS to authorize while it runs, and whether its own IAM policies allow it.

moto evaluates no policy, so a grant that AWS refuses passes there. This module records every AWS
call of a workflow run: the function's through botocore (each client the function makes, and any
call from the function's thread), the state machine's from its execution history (TaskScheduled:
the integration and the parameters Step Functions sends, for `arn:aws:states:::SERVICE:ACTION` and
`arn:aws:states:::aws-sdk:SERVICE:ACTION` alike). Each call becomes the request IAM decides: the
action AWS authorizes (from the IAM catalogue, tools/check_iam.py), the resource ARN (the catalogue's
ARN format for the action's resource type, filled from the call's parameters) and the condition keys
the request carries (a key the action does not support is absent). `evaluate` applies IAM's logic
to the principal's identity policy: an explicit Deny wins, else some Allow must match action,
resource and every condition. An operator it does not implement, or a condition key it does not
compute for an action that supports it, is an error, never an allow.
"""

from __future__ import annotations

import json
import re
import threading
import weakref
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from unittest import mock

import botocore.client

from tools.check_iam import as_list, parse_operator, privilege, resource_formats, supports_key

#: operations AWS authorizes under another action's name (each operation's "Permissions" section in
#: its API reference); every other operation is the action of its own name. tests/contract/
#: test_iam_catalogue.py checks each entry against the catalogue.
OPERATION_ACTIONS = {
    ("s3", "CreateMultipartUpload"): "s3:PutObject",
    ("s3", "UploadPart"): "s3:PutObject",
    ("s3", "CompleteMultipartUpload"): "s3:PutObject",
    ("s3", "HeadObject"): "s3:GetObject",
    ("s3", "ListMultipartUploads"): "s3:ListBucketMultipartUploads",
    ("s3", "ListObjectsV2"): "s3:ListBucket",
    ("s3", "ListParts"): "s3:ListMultipartUploadParts",
    ("lambda", "Invoke"): "lambda:InvokeFunction",
    ("stepfunctions", "DescribeExecution"): "states:DescribeExecution",
    ("stepfunctions", "SendTaskSuccess"): "states:SendTaskSuccess",
    ("stepfunctions", "SendTaskHeartbeat"): "states:SendTaskHeartbeat",
}
#: the call parameter that fills an ARN-format variable, where the catalogue's name differs
FORMAT_PARAMETERS = {"BucketName": "Bucket", "ObjectName": "Key"}
#: what the service uses when a call leaves the parameter out (PutEvents: the default bus)
PARAMETER_DEFAULTS = {"EventBusName": "default"}
#: the condition keys this module computes; a policy conditioned on another key the action supports
#: fails the test (NotComputed) rather than guess
COMPUTED_KEYS = {"aws:securetransport", "aws:requestedregion", "aws:principalaccount", "aws:principalarn",
                 "dynamodb:leadingkeys", "s3:prefix"}


class Unsupported(Exception):
    """A policy uses what this evaluator does not implement: the test fails, it does not allow."""


@dataclass(frozen=True)
class Call:
    principal: str  # "function" or "state machine"
    service: str  # the SDK's service name (s3, dynamodb, lambda, events, cloudwatch...)
    operation: str  # the API operation, e.g. PutItem
    params: Mapping[str, Any]
    region: str
    scenario: str = ""

    def __str__(self) -> str:
        names = ("Bucket", "Key", "TableName", "FunctionName", "SecretId")
        shown = {k: v for k, v in self.params.items() if k in names and not isinstance(v, dict)}
        for name in ("Key", "Item"):
            if isinstance(self.params.get(name), dict) and "id" in self.params[name]:
                shown[f"{name}.id"] = _attribute_value(self.params[name]["id"])
        return f"[{self.scenario}] {self.principal}: {self.service}.{self.operation}{shown}"


@dataclass(frozen=True)
class Request:
    call: Call
    action: str
    resource: str
    context: Mapping[str, list[str]]  # condition key (lower case) -> values

    def __str__(self) -> str:
        return f"{self.call} -> {self.action} on {self.resource} with {dict(self.context)}"


# --- recording ----------------------------------------------------------------------------------


@dataclass
class FunctionCalls:
    """Records the function's AWS calls while `handler` (the function, as InProcessLambdas calls it) runs,
    or, given `thread_name`, those of the clients made in threads of that name (the embedded sweeper's)."""

    calls: list[Call] = field(default_factory=list)
    scenario: str = ""
    principal: str = "function"
    thread_name: str | None = None

    def __post_init__(self) -> None:
        self._thread: int | None = None
        self._clients: weakref.WeakSet[Any] = weakref.WeakSet()
        self._lock = threading.Lock()

    def wrap(self, handler: Any) -> Any:
        def run(event: Any, context: Any) -> Any:
            self._thread = threading.get_ident()
            try:
                return handler(event, context)
            finally:
                self._thread = None

        return run

    @contextmanager
    def recording(self) -> Iterator[FunctionCalls]:
        recorder = self
        create_client = botocore.client.ClientCreator.create_client
        make_api_call = botocore.client.BaseClient._make_api_call

        def created(creator: Any, *args: Any, **kwargs: Any) -> Any:
            client = create_client(creator, *args, **kwargs)
            if recorder._thread == threading.get_ident() or threading.current_thread().name == recorder.thread_name:
                recorder._clients.add(client)
            return client

        def called(client: Any, operation: str, params: Mapping[str, Any]) -> Any:
            if client in recorder._clients or recorder._thread == threading.get_ident():
                call = Call(recorder.principal, client.meta.service_model.service_name, operation, dict(params),
                            client.meta.region_name, recorder.scenario)
                with recorder._lock:
                    recorder.calls.append(call)
            return make_api_call(client, operation, params)

        with (
            mock.patch.object(botocore.client.ClientCreator, "create_client", created),
            mock.patch.object(botocore.client.BaseClient, "_make_api_call", called),
        ):
            yield self


def state_machine_calls(history: list[Mapping[str, Any]], region: str, scenario: str = "") -> list[Call]:
    """The service integrations an execution called, from its TaskScheduled events."""
    calls = []
    for event in history:
        details = event.get("taskScheduledEventDetails")
        if details is None:
            continue
        service = details["resourceType"].removeprefix("aws-sdk:")
        operation = integration_operation(details["resource"])
        calls.append(Call("state machine", service, operation, json.loads(details["parameters"]),
                          details.get("region", region), scenario))
    return calls


def integration_operation(resource: str) -> str:
    """`putItem`, `invoke.waitForTaskToken`, `startExecution.sync:2` -> the API operation's name."""
    name = resource.split(".", 1)[0]
    return name[:1].upper() + name[1:]


def task_integrations(definition: Mapping[str, Any]) -> dict[str, tuple[str, str]]:
    """Every Task state's service integration (state name -> (service, operation)), nested states included."""
    found = {}
    for name, state in definition.get("States", {}).items():
        resource = str(state.get("Resource", ""))
        match = re.fullmatch(r"arn:aws[a-z-]*:states:::(?:aws-sdk:)?([a-z0-9-]+):(.+)", resource)
        if state.get("Type") == "Task" and match:
            found[name] = (match[1], integration_operation(match[2]))
        for branch in state.get("Branches", []):
            found.update(task_integrations(branch))
        if "Iterator" in state or "ItemProcessor" in state:
            found.update(task_integrations(state.get("ItemProcessor") or state["Iterator"]))
    return found


# --- calls -> requests --------------------------------------------------------------------------


def action_for(service: str, operation: str) -> str:
    action = OPERATION_ACTIONS.get((service, operation), f"{service}:{operation}")
    if privilege(action) is None:
        raise Unsupported(f"no IAM action known for {service}.{operation} (tried {action}): map it in "
                          f"OPERATION_ACTIONS, from the operation's API reference")
    return action


def requests_for(call: Call, *, account: str, principal_arn: str, partition_keys: Mapping[str, str]) -> list[Request]:
    """The request(s) IAM decides for `call`: one per resource it acts on."""
    action = action_for(call.service, call.operation)
    context = {
        "aws:securetransport": ["true"],  # the SDKs and Step Functions call AWS over TLS
        "aws:requestedregion": [call.region],
        "aws:principalaccount": [account],
        "aws:principalarn": [principal_arn],
    }
    leading = _leading_keys(call, partition_keys)
    if leading is not None:
        context["dynamodb:leadingkeys"] = leading
    if isinstance(call.params.get("Prefix"), str):  # a listing's prefix (ListObjectsV2): s3:prefix
        context["s3:prefix"] = [call.params["Prefix"]]
    supported = {k: v for k, v in context.items() if supports_key(action, k)}
    return [Request(call, action, resource, supported) for resource in _resources(call, action, account)]


def _leading_keys(call: Call, partition_keys: Mapping[str, str]) -> list[str] | None:
    table = str(call.params.get("TableName", "")).rsplit("/", 1)[-1]
    key_name = partition_keys.get(table)
    if key_name is not None and call.operation == "Query":  # the partition key's value in the key condition
        condition = call.params.get("KeyConditionExpression", "")
        found = re.search(rf"(?:^|\(|\s){re.escape(key_name)}\s*=\s*(:\w+)", condition)
        values = call.params.get("ExpressionAttributeValues", {})
        return [_attribute_value(values[found[1]])] if found and found[1] in values else None
    item = call.params.get("Key") or call.params.get("Item")
    if key_name is None or not isinstance(item, Mapping) or key_name not in item:
        return None
    return [_attribute_value(item[key_name])]


def _attribute_value(value: Any) -> str:
    """A DynamoDB attribute value ({"S": "x"}) as its string."""
    return str(next(iter(value.values()))) if isinstance(value, Mapping) else str(value)


def _resources(call: Call, action: str, account: str) -> list[str]:
    formats = resource_formats(action)
    if not formats:
        return ["*"]
    # a call that names its resource by ARN (DescribeExecution's executionArn): that ARN, if it fits
    for value in call.params.values():
        if isinstance(value, str) and value.startswith("arn:") and any(
            re.fullmatch(re.sub(r"\\\$\\\{\w+\\\}", "[^:]+", re.escape(f)), value) for f in formats
        ):
            return [value]
    for arn_format in formats:  # the first resource type the call's parameters name
        names = [n for n in re.findall(r"\$\{(\w+)\}", arn_format) if n not in ("Partition", "Region", "Account")]
        sets = _parameter_sets(call.params, names)
        if not sets:
            continue
        arns = []
        for values in sets:
            given = [v for v in values.values() if v.startswith("arn:")]
            if given:  # a name-or-ARN parameter given as the ARN
                arns.append(given[0])
                continue
            arn = arn_format.replace("${Partition}", "aws").replace("${Region}", call.region)
            arn = arn.replace("${Account}", account)
            for name, value in values.items():
                arn = arn.replace("${" + name + "}", value)
            arns.append(arn)
        return arns
    raise Unsupported(f"{call}: cannot tell the resource of {action} (formats {formats}) from its parameters")


def _parameter_sets(params: Mapping[str, Any], names: list[str]) -> list[dict[str, str]]:
    """The values of `names` in `params`: one set, or one per entry of a list of entries (PutEvents'
    Entries[].EventBusName); none when a name is missing."""
    def lookup(where: Mapping[str, Any], name: str, default: str | None = None) -> str | None:
        value = where.get(FORMAT_PARAMETERS.get(name, name), default)
        return None if value is None else str(value)

    top = {n: lookup(params, n) for n in names}
    if all(v is not None for v in top.values()):
        return [top]  # type: ignore[list-item]
    entries = [e for v in params.values() if isinstance(v, list) for e in v if isinstance(e, Mapping)]
    sets = [{n: lookup(e, n, PARAMETER_DEFAULTS.get(n)) for n in names} for e in entries]
    return [s for s in sets if all(v is not None for v in s.values())]  # type: ignore[misc]


# --- evaluation ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Decision:
    allowed: bool
    why: str


def evaluate(statements: list[Mapping[str, Any]], request: Request) -> Decision:
    """IAM's decision on `request` under one identity policy: explicit Deny, else Allow, else implicit deny."""
    allowed_by = None
    considered = []
    for index, statement in enumerate(statements):
        label = statement.get("Sid", f"#{index}")
        if not _action_matches(statement, request.action):
            continue
        if not _resource_matches(statement, request.resource):
            considered.append(f"{label} (action matches, resource does not)")
            continue
        if not conditions_hold(statement.get("Condition", {}), request):
            considered.append(f"{label} (action and resource match, its Condition does not hold)")
            continue
        if statement.get("Effect") == "Deny":
            return Decision(False, f"denied explicitly by {label}")
        allowed_by = label
    if allowed_by is not None:
        return Decision(True, f"allowed by {allowed_by}")
    return Decision(False, "no statement allows it; considered: " + (", ".join(considered) or "none with this action"))


def _glob(pattern: str, *, ignore_case: bool = False) -> re.Pattern[str]:
    body = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.compile(body, re.IGNORECASE | re.DOTALL if ignore_case else re.DOTALL)


def _action_matches(statement: Mapping[str, Any], action: str) -> bool:
    if "NotAction" in statement:
        return not any(_glob(str(p), ignore_case=True).fullmatch(action) for p in as_list(statement["NotAction"]))
    return any(_glob(str(p), ignore_case=True).fullmatch(action) for p in as_list(statement.get("Action", [])))


def _resource_matches(statement: Mapping[str, Any], resource: str) -> bool:
    for pattern in as_list(statement.get("Resource", statement.get("NotResource", []))):
        if "${" in str(pattern):
            raise Unsupported(f"policy variables in Resource ({pattern})")
    if "NotResource" in statement:
        return not any(_glob(str(p)).fullmatch(resource) for p in as_list(statement["NotResource"]))
    return any(_glob(str(p)).fullmatch(resource) for p in as_list(statement.get("Resource", [])))


def conditions_hold(condition: Mapping[str, Any], request: Request) -> bool:
    """Every operator's every key holds (AND); a key's several policy values are alternatives (OR)."""
    for operator_text, block in condition.items():
        operator = parse_operator(operator_text)
        if operator is None or operator.family not in ("String", "Arn", "Bool", "Null"):
            raise Unsupported(f"condition operator {operator_text}")
        for key, expected in block.items():
            wanted = [str(v) for v in as_list(expected)]
            if any("${" in w for w in wanted):
                raise Unsupported(f"policy variables in {operator_text} {key}")
            if key.lower() not in COMPUTED_KEYS and supports_key(request.action, key):
                raise Unsupported(f"{request.action} carries {key}, which this test does not compute")
            if not _key_holds(operator, operator_text, request.context.get(key.lower()), wanted):
                return False
    return True


def _key_holds(operator: Any, text: str, values: list[str] | None, wanted: list[str]) -> bool:
    if operator.name == "Null":
        return (values is None) == (wanted[0].lower() == "true")
    negated = "Not" in operator.name
    if values is None:
        # IAM: a missing key does not match, so a negated operator holds; ...IfExists holds;
        # ForAllValues holds over no values, ForAnyValue does not
        if operator.if_exists or operator.set_prefix == "ForAllValues":
            return True
        return negated and operator.set_prefix is None

    def holds(value: str) -> bool:
        matched = any(_compare(operator.name, value, w) for w in wanted)
        return not matched if negated else matched

    if operator.set_prefix == "ForAllValues":
        return all(holds(v) for v in values)
    if operator.set_prefix == "ForAnyValue":
        return any(holds(v) for v in values)
    if len(values) != 1:
        raise Unsupported(f"{text} on a key with {len(values)} values (use ForAllValues or ForAnyValue)")
    return holds(values[0])


def _compare(name: str, value: str, wanted: str) -> bool:
    plain = name.replace("Not", "")
    if plain == "StringEquals":
        return value == wanted
    if plain == "StringEqualsIgnoreCase":
        return value.lower() == wanted.lower()
    if plain == "StringLike":
        return bool(_glob(wanted).fullmatch(value))
    if plain in ("ArnEquals", "ArnLike"):  # both compare each of the six parts, wildcards allowed
        value_parts, wanted_parts = value.split(":", 5), wanted.split(":", 5)
        return len(value_parts) == len(wanted_parts) == 6 and all(
            _glob(w).fullmatch(v) for v, w in zip(value_parts, wanted_parts, strict=True))
    if plain == "Bool":
        return value.lower() == wanted.lower()
    raise Unsupported(f"condition operator {name}")
