"""The stack of `template.yaml`, created on an embedded AWS (moto in-process, or moto's server via
`AWS_ENDPOINT_URL`): the same bucket settings, table, event patterns, function environment and state
machine definition as a deployment, read from the template itself so the two cannot drift apart.

Two things differ from a deployment, because moto cannot do them: the function's code runs in this
process (`InProcessLambdas`), and the submit rule gets no Step Functions target (moto's `put_events`
raises NotImplementedError for a whole call when any matching rule has one); `EmbeddedStack.
start_from_event` applies that rule's pattern and InputPath and starts the execution instead.
And the bucket's TLS-only policy is left out: moto ignores its condition and would deny everything.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import re
import threading
import time
import uuid
import zipfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import botocore.session

from .lambda_bridge import ROOT, InProcessLambdas, load_handler

TEMPLATE = ROOT / "template.yaml"
logger = logging.getLogger(__name__)

FUNCTION = "PollTaskFunction"
SWEEPER = "SweeperFunction"
#: the receiver of DashScope's task-finished notifications, when TaskFinishedTokenSecretArn is given
RECEIVER = "TaskFinishedFunction"
STATE_MACHINE = "PollTaskStateMachine"
SUBMIT_EVENT = "TaskSubmitted"
#: the secret standing in for the required DashScopeApiKeySecretArn parameter (a name, not a key)
_LOCAL_SECRET_NAME = "dashscope-api-key"  # noqa: S105


# --- execution names --------------------------------------------------------------------------

#: Step Functions: an execution name is 1-80 characters; only these keep CloudWatch logging possible
_NAME_CHARS = re.compile(r"[A-Za-z0-9_-]{1,80}")


def execution_name(text: str) -> str:
    """The execution name for a task id (or any text): the text itself when it is a valid name
    (DashScope's ids, 36-character UUIDs, are), else its first 63 characters (others as `-`), a
    hyphen and 16 hex digits of its SHA-256: 80 characters, the same for the same text, different
    for texts that differ only after the 63rd character."""
    if _NAME_CHARS.fullmatch(text):
        return text
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    return re.sub(r"[^A-Za-z0-9_-]", "-", text[:63]) + "-" + digest


# --- the template -----------------------------------------------------------------------------


class Template:
    """`template.yaml` with its parameters set: resolves the intrinsic functions the stack uses."""

    def __init__(
        self,
        path: Path = TEMPLATE,
        *,
        parameters: Mapping[str, str] | None = None,
        region: str = "us-east-1",
        account_id: str = "123456789012",
        stack_name: str = "wan-relay",
    ) -> None:
        from cfnlint.decode import cfn_yaml  # a CloudFormation-aware loader: !Ref, !Sub... as Fn:: dicts

        self.path = path
        self.doc: dict[str, Any] = _plain(cfn_yaml.load(str(path)))
        declared = self.doc.get("Parameters", {})
        unknown = set(parameters or {}) - set(declared)
        if unknown:
            raise ValueError(f"{path.name} has no parameter(s) {sorted(unknown)}")
        self.parameters: dict[str, str] = {
            name: str(spec["Default"]) for name, spec in declared.items() if "Default" in spec
        }
        self.parameters.update({k: str(v) for k, v in (parameters or {}).items()})
        self.region = region
        self.account_id = account_id
        self.stack_name = stack_name
        #: physical names (what `Ref` answers) and attributes of the resources created so far
        self.refs: dict[str, str] = {}
        self.attributes: dict[tuple[str, str], str] = {}

    # the document

    def resource(self, logical_id: str) -> dict[str, Any]:
        return self.doc["Resources"][logical_id]

    def properties(self, logical_id: str) -> dict[str, Any]:
        return self.resource(logical_id).get("Properties", {})

    def function_environment(self, logical_id: str = FUNCTION) -> dict[str, str]:
        """Globals' variables, then the function's own, resolved."""
        variables = dict(self.doc.get("Globals", {}).get("Function", {}).get("Environment", {}).get("Variables", {}))
        variables.update(self.properties(logical_id).get("Environment", {}).get("Variables", {}))
        return {name: str(value) for name, value in self.resolve(variables).items()}

    def definition(self, logical_id: str = STATE_MACHINE) -> str:
        """The state machine's ASL with its DefinitionSubstitutions applied, as a deployment has it."""
        props = self.properties(logical_id)
        text = (self.path.parent / props["DefinitionUri"]).read_text()
        substitutions = self.resolve(props.get("DefinitionSubstitutions", {}))
        for name, value in substitutions.items():
            text = text.replace("${" + name + "}", str(value))
        leftover = re.findall(r"\$\{[A-Za-z0-9_]+\}", text)
        if leftover:
            raise ValueError(f"{props['DefinitionUri']} uses substitutions the template does not give: {leftover}")
        json.loads(text)
        return text

    def output(self, name: str) -> Any:
        return self.resolve(self.doc["Outputs"][name]["Value"])

    # the intrinsic functions

    def condition(self, name: str) -> bool:
        return bool(self.resolve(self.doc["Conditions"][name]))

    def resolve(self, node: Any) -> Any:
        if isinstance(node, list):
            return [v for v in (self.resolve(n) for n in node) if v is not _NO_VALUE]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            (key, arg), = node.items()
            handler = _INTRINSICS.get(key)
            if handler is not None:
                return handler(self, arg)
        resolved = {k: self.resolve(v) for k, v in node.items()}
        return {k: v for k, v in resolved.items() if v is not _NO_VALUE}

    def ref(self, name: str) -> Any:
        pseudo = {
            "AWS::Region": self.region,
            "AWS::AccountId": self.account_id,
            "AWS::Partition": "aws",
            "AWS::StackName": self.stack_name,
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::NoValue": _NO_VALUE,
        }
        if name in pseudo:
            return pseudo[name]
        if name in self.parameters:
            if self.doc.get("Parameters", {}).get(name, {}).get("Type") == "CommaDelimitedList":
                return [item.strip() for item in self.parameters[name].split(",")]
            return self.parameters[name]
        if name in self.refs:
            return self.refs[name]
        raise KeyError(f"{self.path.name}: nothing answers Ref {name} here (not created, or no value)")

    def get_att(self, logical_id: str, attribute: str) -> Any:
        try:
            return self.attributes[(logical_id, attribute)]
        except KeyError:
            raise KeyError(f"{self.path.name}: no value for {logical_id}.{attribute} here") from None

    def _sub(self, arg: Any) -> str:
        text, variables = (arg, {}) if isinstance(arg, str) else (arg[0], self.resolve(arg[1]))

        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name.startswith("!"):
                return "${" + name[1:] + "}"
            if name in variables:
                return str(variables[name])
            if "." in name and not name.startswith("AWS::"):
                return str(self.get_att(*name.split(".", 1)))
            return str(self.ref(name))

        return re.sub(r"\$\{([^}]+)\}", replace, text)


class _NoValue:
    def __repr__(self) -> str:
        return "AWS::NoValue"


_NO_VALUE = _NoValue()

_INTRINSICS: dict[str, Any] = {
    "Ref": lambda t, arg: t.ref(arg),
    "Fn::GetAtt": lambda t, arg: t.get_att(*(arg.split(".", 1) if isinstance(arg, str) else arg)),
    "Fn::Sub": lambda t, arg: t._sub(arg),
    "Fn::If": lambda t, arg: t.resolve(arg[1] if t.condition(arg[0]) else arg[2]),
    "Fn::Equals": lambda t, arg: str(t.resolve(arg[0])) == str(t.resolve(arg[1])),
    "Fn::Not": lambda t, arg: not t.resolve(arg[0]),
    "Fn::And": lambda t, arg: all(t.resolve(a) for a in arg),
    "Fn::Or": lambda t, arg: any(t.resolve(a) for a in arg),
    "Condition": lambda t, arg: t.condition(arg),
    "Fn::FindInMap": lambda t, arg: t.doc["Mappings"][t.resolve(arg[0])][t.resolve(arg[1])][t.resolve(arg[2])],
    "Fn::Join": lambda t, arg: str(arg[0]).join(str(v) for v in t.resolve(arg[1])),
}


def _plain(node: Any) -> Any:
    """cfn-lint's node classes as plain dicts, lists and strings."""
    if isinstance(node, dict):
        return {str(k): _plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_plain(v) for v in node]
    if isinstance(node, str):
        return str(node)
    return node


# --- the stack --------------------------------------------------------------------------------

_loader: Any = None


def aws_session() -> boto3.session.Session:
    """A fresh boto3 session (it reads the environment: endpoint, region, credentials now) that shares
    botocore's model loader with the previous ones: a client then costs no JSON parsing."""
    global _loader
    core = botocore.session.Session()
    if _loader is None:
        _loader = core.get_component("data_loader")
    else:
        core.register_component("data_loader", _loader)
    return boto3.session.Session(botocore_session=core)



@dataclass
class EmbeddedStack:
    """What `deploy_embedded_stack` created."""

    bucket: str
    bus_name: str
    function_name: str
    function_arn: str
    state_machine_arn: str
    #: an SQS queue receiving every completion event, through a rule with the template's pattern
    events_queue_url: str
    idempotency_table: str
    #: the parked workflows' task tokens (the registry the sweeper reads)
    parked_table: str
    #: the submit rule's event pattern (moto cannot give that rule its Step Functions target)
    submit_rule_pattern: dict[str, Any]
    region: str
    #: what EventBridge hands the state machine: this path of a matching event
    submit_input_path: str = "$.detail"
    submit_rule_name: str = ""
    completion_pattern: dict[str, Any] = field(default_factory=dict)
    media_prefix: str = "wan/"
    account_id: str = ""
    #: the environment the function runs with (the template's, merged with the caller's)
    function_environment: dict[str, str] = field(default_factory=dict)
    #: ... and the sweeper's (see `sweeping`)
    sweeper_environment: dict[str, str] = field(default_factory=dict)
    #: ... and the receiver's, when the template has one (TaskFinishedTokenSecretArn); it is created with
    #: its role but not registered: nothing routes HTTP to it here, a caller runs its handler
    receiver_environment: dict[str, str] = field(default_factory=dict)

    def submission_input(self, event: Mapping[str, Any]) -> dict[str, Any] | None:
        """The execution input the submit rule would start for `event` (a full EventBridge event,
        envelope included), or None when the rule's pattern does not match it.

        Matched by moto's own EventBridge pattern matcher: moto does not implement TestEventPattern.
        """
        from moto.events.models import EventPattern

        if not EventPattern.load(json.dumps(self.submit_rule_pattern)).matches_event(dict(event)):
            return None
        return _json_path(event, self.submit_input_path)

    def start_from_event(self, event: Mapping[str, Any], *, name: str | None = None) -> str | None:
        """Does what the submit rule's target does: the execution ARN, or None when no rule matches.
        EventBridge names the execution itself; `name` stands in for that generated name."""
        loop_input = self.submission_input(event)
        if loop_input is None:
            return None
        execution = name or execution_name(f"{loop_input.get('task_id', 'task')}-{event.get('id', 'event')}")
        return self.start(loop_input, name=execution)

    @contextmanager
    def sweeping(self, *, run_seconds: float = 60.0) -> Iterator[list[dict[str, Any]]]:
        """The account's sweeper, running in a thread while the block runs: what the schedule and a
        park's wake do in a deployment, each run started again as soon as the last one ended (its time
        up, or nothing parked). Not through the function registry: it would hold every poll for its run.
        Yields the runs' summaries, as each run ends (the sweeper function's answers)."""
        from wan_relay.config import Config
        from wan_relay.runtime import sweep_host_from_config

        config = Config.from_env({"MEDIA_BUCKET": "none (the sweeper stores no media)", **self.sweeper_environment})
        done = threading.Event()
        running: list[Any] = []
        summaries: list[dict[str, Any]] = []

        def sweep() -> None:
            while not done.is_set():
                host = sweep_host_from_config(config, holder=f"embedded-{uuid.uuid4()}")
                running[:] = [host]
                try:
                    summaries.append(host.run(time.time() + run_seconds))
                except Exception:  # a run that failed is started again, as the next minute's would be
                    logger.exception("the embedded sweeper's run failed")
                done.wait(0.2)

        thread = threading.Thread(target=sweep, name="embedded-sweeper", daemon=True)
        thread.start()
        try:
            yield summaries
        finally:
            done.set()
            for host in running:
                host.stop()
            thread.join(timeout=30)

    def client(self, service: str) -> Any:
        """A boto3 client for this stack's AWS (cheap: see `aws_session`)."""
        return aws_session().client(service)

    def start(self, loop_input: Mapping[str, Any], *, name: str | None = None) -> str:
        """StartExecution as a caller does it: the execution named after the task (`execution_name`)."""
        sfn = self.client("stepfunctions")
        answer = sfn.start_execution(
            stateMachineArn=self.state_machine_arn,
            name=name or execution_name(str(loop_input["task_id"])),
            input=json.dumps(dict(loop_input)),
        )
        return answer["executionArn"]


def deploy_embedded_stack(
    *,
    environment: dict[str, str],
    lambdas: InProcessLambdas,
    prefix: str = "wan-relay",
    parameters: Mapping[str, str] | None = None,
    template_path: Path = TEMPLATE,
    parks: bool = False,
) -> EmbeddedStack:
    """Creates the template's resources with boto3's default clients and registers the real handler.

    `environment` is merged over what the template gives the function (the caller supplies what a
    deployment takes from its parameters and secret: DASHSCOPE_BASE_URL, DASHSCOPE_API_KEY,
    ALLOWED_MEDIA_URLS...); the names of the resources created here always come from the stack.
    `parameters` overrides the template's parameter defaults. Workflows park (the template's default
    `Waiting`) only with `parks=True`, for a caller that drives the sweeper (nothing schedules it here);
    otherwise each polls on its own, unless `parameters` says `Waiting` itself.
    """
    session = aws_session()
    region = session.region_name or "us-east-1"
    account_id = session.client("sts").get_caller_identity()["Account"]
    params = dict(parameters or {})
    if not parks:
        params.setdefault("Waiting", "poll")
    if "DashScopeApiKeySecretArn" not in params:
        params["DashScopeApiKeySecretArn"] = _local_secret(session, prefix, environment.get("DASHSCOPE_API_KEY"))
    template = Template(template_path, parameters=params, region=region, account_id=account_id, stack_name=prefix)

    bucket = _create_bucket(session, template, f"{prefix}-media-{account_id}")
    bus_name = _ensure_bus(session, _bus_name(template))
    table = _create_table(session, template, f"{prefix}-idempotency")
    parked_table = _create_table(session, template, f"{prefix}-parked-tasks", "ParkedTasksTable")
    _, _, sweeper_env = _create_function(
        session, template, lambdas, environment, f"{prefix}-sweeper", logical_id=SWEEPER, register=False
    )
    function_name, function_arn, function_env = _create_function(
        session, template, lambdas, environment, f"{prefix}-poll-task"
    )
    receiver_env: dict[str, str] = {}
    if template.condition(template.resource(RECEIVER)["Condition"]):
        _, _, receiver_env = _create_function(
            session, template, lambdas, environment, f"{prefix}-task-finished", logical_id=RECEIVER, register=False
        )
    state_machine_arn = _create_state_machine(session, template, f"{prefix}-poll-task")
    _attach_policies(session, template)

    completion_pattern = json.loads(template.output("CompletionEventPattern"))
    queue_url = _observe(session, bus_name, completion_pattern, f"{prefix}-completed-events")

    submit = template.properties(STATE_MACHINE)["Events"][SUBMIT_EVENT]["Properties"]
    submit_pattern = template.resolve(submit["Pattern"])
    submit_rule = f"{prefix}-task-submitted"
    # the rule exists, as deployed, but without its Step Functions target (see the module docstring)
    session.client("events").put_rule(
        Name=submit_rule, EventBusName=bus_name, EventPattern=json.dumps(submit_pattern), State="ENABLED"
    )
    return EmbeddedStack(
        bucket=bucket,
        bus_name=bus_name,
        function_name=function_name,
        function_arn=function_arn,
        state_machine_arn=state_machine_arn,
        events_queue_url=queue_url,
        idempotency_table=table,
        parked_table=parked_table,
        submit_rule_pattern=submit_pattern,
        region=region,
        submit_input_path=submit.get("InputPath", "$"),
        submit_rule_name=submit_rule,
        completion_pattern=completion_pattern,
        media_prefix=template.parameters["MediaPrefix"],
        account_id=account_id,
        function_environment=function_env,
        sweeper_environment=sweeper_env,
        receiver_environment=receiver_env,
    )


def _local_secret(session: Any, prefix: str, api_key: str | None) -> str:
    """The secret a deployment reads the key from; holds the caller's key when it gives one."""
    secrets = session.client("secretsmanager")
    name = f"{prefix}/{_LOCAL_SECRET_NAME}"
    try:
        return secrets.create_secret(Name=name, SecretString=api_key or "not-set")["ARN"]
    except secrets.exceptions.ResourceExistsException:
        return secrets.describe_secret(SecretId=name)["ARN"]


def _create_bucket(session: Any, template: Template, default_name: str) -> str:
    s3 = session.client("s3")
    created = template.condition(template.resource("MediaBucket")["Condition"])
    name = default_name if created else template.parameters["MediaBucketName"]
    location = {} if template.region == "us-east-1" else {
        "CreateBucketConfiguration": {"LocationConstraint": template.region}
    }
    if not created:  # an existing bucket: a deployment uses it as it is
        template.refs["MediaBucketName"] = name
        if name not in {b["Name"] for b in s3.list_buckets().get("Buckets", [])}:
            s3.create_bucket(Bucket=name, **location)
        return name
    props = template.properties("MediaBucket")
    s3.create_bucket(Bucket=name, **location)
    template.refs["MediaBucket"] = name
    template.attributes[("MediaBucket", "Arn")] = f"arn:aws:s3:::{name}"
    s3.put_public_access_block(Bucket=name, PublicAccessBlockConfiguration=props["PublicAccessBlockConfiguration"])
    if "OwnershipControls" in props:
        s3.put_bucket_ownership_controls(Bucket=name, OwnershipControls=props["OwnershipControls"])
    # CloudFormation's ServerSideEncryptionByDefault is the API's ApplyServerSideEncryptionByDefault
    encryption = [
        {("ApplyServerSideEncryptionByDefault" if k == "ServerSideEncryptionByDefault" else k): v for k, v in r.items()}
        for r in props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    ]
    s3.put_bucket_encryption(Bucket=name, ServerSideEncryptionConfiguration={"Rules": encryption})
    rules = []
    for rule in props["LifecycleConfiguration"]["Rules"]:
        api_rule = {k: v for k, v in rule.items() if k not in ("Id", "Prefix")}
        api_rule.update(ID=rule["Id"], Filter={"Prefix": rule.get("Prefix", "")})
        rules.append(api_rule)
    s3.put_bucket_lifecycle_configuration(Bucket=name, LifecycleConfiguration={"Rules": rules})
    # The TLS-only bucket policy is resolved (so its references are checked) but not applied: moto
    # ignores policy conditions, so its `Deny * unless aws:SecureTransport` would deny every request.
    template.resolve(template.properties("MediaBucketPolicy")["PolicyDocument"])
    return name


def _bus_name(template: Template) -> str:
    """The stack's bus (CreateEventBus) or the named one. Its resource policy is resolved, so its
    references are checked, but not applied: moto ignores policy conditions (see the bucket policy)."""
    if not template.condition("CreateTheEventBus"):
        return str(template.parameters["EventBusName"])
    name = str(template.resolve(template.properties("RelayEventBus")["Name"]))
    template.refs["RelayEventBus"] = name
    template.attributes[("RelayEventBus", "Arn")] = (
        f"arn:aws:events:{template.region}:{template.account_id}:event-bus/{name}"
    )
    if template.condition("HasSubmitters"):
        for policy in ("RelayEventBusPolicy", "RelayEventBusDenyOthers"):
            template.resolve(template.properties(policy)["Statement"])
    return name


def _ensure_bus(session: Any, name: str) -> str:
    events = session.client("events")
    if name != "default":
        with contextlib.suppress(events.exceptions.ResourceAlreadyExistsException):
            events.create_event_bus(Name=name)
    return name


def _create_table(session: Any, template: Template, name: str, logical_id: str = "IdempotencyTable") -> str:
    dynamodb = session.client("dynamodb")
    props = template.properties(logical_id)
    dynamodb.create_table(
        TableName=name,
        AttributeDefinitions=props["AttributeDefinitions"],
        KeySchema=props["KeySchema"],
        BillingMode=props["BillingMode"],
    )
    dynamodb.get_waiter("table_exists").wait(TableName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 30})
    dynamodb.update_time_to_live(TableName=name, TimeToLiveSpecification=props["TimeToLiveSpecification"])
    if props.get("PointInTimeRecoverySpecification"):
        dynamodb.update_continuous_backups(
            TableName=name, PointInTimeRecoverySpecification=props["PointInTimeRecoverySpecification"]
        )
    arn = dynamodb.describe_table(TableName=name)["Table"]["TableArn"]
    template.refs[logical_id] = name
    template.attributes[(logical_id, "Arn")] = arn
    return name


def _role(session: Any, template: Template, logical_id: str, name: str, service: str) -> str:
    """A role with the resource's `Policies` statements, as SAM would give it."""
    iam = session.client("iam")
    trust = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}],
    }
    try:
        arn = iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
    except iam.exceptions.EntityAlreadyExistsException:
        arn = iam.get_role(RoleName=name)["Role"]["Arn"]
    for index, policy in enumerate(template.properties(logical_id).get("Policies", [])):
        if isinstance(policy, dict) and "Statement" in policy:
            document = json.dumps(template.resolve(policy))
            iam.put_role_policy(RoleName=name, PolicyName=f"{logical_id}Policy{index}", PolicyDocument=document)
    template.refs[f"{logical_id}Role"] = name  # SAM's logical id of the role it generates
    return arn


def _attach_policies(session: Any, template: Template) -> None:
    """The template's own `AWS::IAM::Policy` resources, on the roles they name (once those exist)."""
    iam = session.client("iam")
    for resource in template.doc["Resources"].values():
        if resource["Type"] != "AWS::IAM::Policy":
            continue
        if "Condition" in resource and not template.condition(resource["Condition"]):
            continue
        props = template.resolve(resource["Properties"])
        for role in props.get("Roles", []):
            iam.put_role_policy(RoleName=role, PolicyName=props["PolicyName"],
                                PolicyDocument=json.dumps(props["PolicyDocument"]))


#: what the embedded function has and a deployed one never: its DashScope and media are on loopback
_EMBEDDED_ONLY = {"ALLOW_LOOPBACK_MEDIA_ADDRESSES": "true"}


def _create_function(
    session: Any,
    template: Template, lambdas: InProcessLambdas, environment: Mapping[str, str], name: str,
    *, logical_id: str = FUNCTION, register: bool = True,
) -> tuple[str, str, dict[str, str]]:
    props = template.properties(logical_id)
    globals_ = template.doc.get("Globals", {}).get("Function", {})
    template.refs[logical_id] = name
    template_env = template.function_environment(logical_id)
    owned = {k: template_env[k] for k in ("MEDIA_BUCKET", "EVENT_BUS_NAME", "IDEMPOTENCY_TABLE", "PARKED_TABLE",
                                          "SWEEPER_FUNCTION") if k in template_env}
    merged = {**template_env, **_EMBEDDED_ONLY, **environment, **owned}

    code_dir = template.path.parent / props["CodeUri"]
    module, attribute = props["Handler"].rsplit(".", 1)
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as bundle:
        bundle.write(code_dir / f"{module}.py", f"{module}.py")
    role = _role(session, template, logical_id, f"{name}-role", "lambda.amazonaws.com")
    answer = session.client("lambda").create_function(
        FunctionName=name,
        Runtime=props.get("Runtime", globals_.get("Runtime")),
        Architectures=props.get("Architectures", globals_.get("Architectures", ["arm64"])),
        Role=role,
        Handler=props["Handler"],
        Code={"ZipFile": archive.getvalue()},
        Timeout=int(props.get("Timeout", globals_.get("Timeout", 3))),
        MemorySize=int(props.get("MemorySize", globals_.get("MemorySize", 128))),
        Environment={"Variables": merged},
    )
    template.attributes[(logical_id, "Arn")] = answer["FunctionArn"]
    if register:
        lambdas.register(name, load_handler(code_dir, module, attribute), merged)
    return name, answer["FunctionArn"], merged


def _create_state_machine(session: Any, template: Template, name: str) -> str:
    role = _role(session, template, STATE_MACHINE, f"{name}-states-role", "states.amazonaws.com")
    props = template.properties(STATE_MACHINE)
    name = template.resolve(props["Name"]) if "Name" in props else name
    answer = session.client("stepfunctions").create_state_machine(
        name=name, definition=template.definition(STATE_MACHINE), roleArn=role, type=props.get("Type", "STANDARD")
    )
    template.refs[STATE_MACHINE] = answer["stateMachineArn"]
    template.attributes[(STATE_MACHINE, "Name")] = name
    return answer["stateMachineArn"]


def _observe(session: Any, bus_name: str, pattern: dict[str, Any], name: str) -> str:
    """An SQS queue that receives every completion event: how tests and the demo read them back."""
    sqs = session.client("sqs")
    events = session.client("events")
    queue_url = sqs.create_queue(QueueName=name)["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events.put_rule(Name=name, EventBusName=bus_name, EventPattern=json.dumps(pattern), State="ENABLED")
    events.put_targets(Rule=name, EventBusName=bus_name, Targets=[{"Id": "observer", "Arn": queue_arn}])
    return queue_url


def _json_path(document: Mapping[str, Any], path: str) -> Any:
    """The value at a simple JSONPath (`$`, `$.a.b`), as an InputPath selects it."""
    if path in ("", "$"):
        return dict(document)
    if not path.startswith("$."):
        raise ValueError(f"unsupported InputPath {path!r}")
    value: Any = document
    for part in path[2:].split("."):
        value = value[part]
    return value
