"""The static IAM check (tools/check_iam.py, run by `make check-template`): the shipped template is
clean, and each kind of defect AWS would refuse (or silently never allow) is found in a template
that has it, wherever the policy sits."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import ROOT
from tools import check_iam

TEMPLATE_TEXT = (ROOT / "template.yaml").read_text()

#: the statement template.yaml shipped with until issue 11: s3:prefix is not a key of this action
STALE_UPLOADS_UNDER_PREFIX = '''            - Sid: StaleUploadsUnderPrefix
              Effect: Allow
              Action: s3:ListBucketMultipartUploads
              Resource: !Sub
                - "arn:${AWS::Partition}:s3:::${Bucket}"
                - Bucket: !If [CreateMediaBucket, !Ref MediaBucket, !Ref MediaBucketName]
              Condition:
                StringLike:
                  s3:prefix: !Sub "${MediaPrefix}*"
            - Sid: DashScopeKey
'''


def mutated(tmp_path: Path, old: str, new: str) -> Path:
    assert TEMPLATE_TEXT.count(old) == 1, old
    path = tmp_path / "template.yaml"
    path.write_text(TEMPLATE_TEXT.replace(old, new))
    return path


def issues(path: Path) -> list[tuple[str, str, str]]:
    return [(f.statement, f.issue, f.detail) for f in check_iam.findings(path)]


def test_every_policy_document_of_the_shipped_template_passes_the_iam_catalogue() -> None:
    documents = list(check_iam.policy_documents())
    # the function's and the state machine's roles, SAM's submit-rule role, the trust policies, the
    # bucket and queue policies: in both scenarios (the bucket policy only where the bucket is created)
    assert {d.resource for d in documents} >= {
        "PollTaskFunctionRole", "PollTaskStateMachineRole", "PollTaskStateMachineTaskSubmittedRole",
        "MediaBucketPolicy", "SubmitDeadLetterQueuePolicy",
    }
    assert check_iam.findings() == []


def test_a_condition_on_a_key_the_action_does_not_carry_is_found(tmp_path: Path) -> None:
    path = mutated(tmp_path, "            - Sid: DashScopeKey\n", STALE_UPLOADS_UNDER_PREFIX)

    found = issues(path)

    assert found and all(f[:2] == ("StaleUploadsUnderPrefix", "UNKNOWN_CONDITION_FOR_ACTION") for f in found)
    assert "s3:prefix is not a condition key of s3:ListBucketMultipartUploads" in found[0][2]


def test_an_action_iam_does_not_know_is_found(tmp_path: Path) -> None:
    path = mutated(tmp_path, "                - dynamodb:GetItem\n                - dynamodb:PutItem\n",
                   "                - dynamodb:GetItems\n                - dynamodb:PutItem\n")

    unknown = ("IdempotencyRecords", "UNKNOWN_ACTION", "dynamodb:GetItems is no action in the IAM catalogue")
    assert unknown in issues(path)


def test_an_operator_iam_does_not_know_is_found(tmp_path: Path) -> None:
    path = mutated(tmp_path, 'ForAllValues:StringLike:\n                  dynamodb:LeadingKeys: ["lock#*"]',
                   'ForAllValues:StringMatches:\n                  dynamodb:LeadingKeys: ["lock#*"]')

    # once per deployment the check renders
    assert [f[:2] for f in issues(path)] == [("TaskLocks", "UNKNOWN_OPERATOR")] * len(check_iam.SCENARIOS)


def test_an_operator_of_the_wrong_type_and_a_set_operator_on_a_single_value_are_found(tmp_path: Path) -> None:
    path = mutated(tmp_path, 'ForAllValues:StringLike:\n                  dynamodb:LeadingKeys: ["lock#*"]',
                   'NumericLessThan:\n                  dynamodb:LeadingKeys: ["1"]\n'
                   '                ForAnyValue:StringEquals:\n                  aws:SourceAccount: ["1"]')

    found = {f[1] for f in issues(path)}

    assert found == {"MISMATCHED_TYPE", "SET_OPERATOR_ON_SINGLE_VALUE"}


def test_a_resource_the_action_does_not_act_on_is_found(tmp_path: Path) -> None:
    grant = "Action: secretsmanager:GetSecretValue\n              Resource: "
    path = mutated(tmp_path, grant + "!Ref DashScopeApiKeySecretArn", grant + "!GetAtt IdempotencyTable.Arn")

    (statement, issue, detail), *_ = issues(path)

    assert (statement, issue) == ("DashScopeKey", "RESOURCE_MISMATCH")
    assert "secretsmanager:GetSecretValue acts on" in detail and ":table/" in detail


def test_a_policy_in_a_resource_added_later_is_checked_too(tmp_path: Path) -> None:
    topic = '''  AlarmTopicPolicy:
    Type: AWS::SNS::TopicPolicy
    Properties:
      Topics: [!Ref AlarmTopic]
      PolicyDocument:
        Statement:
          - Sid: CloudWatchAlarms
            Effect: Allow
            Principal: {Service: cloudwatch.amazonaws.com}
            Action: sns:Publishh
            Resource: !Ref AlarmTopic

  AlarmTopic:
    Type: AWS::SNS::Topic

  # --- alarms'''
    path = mutated(tmp_path, "  # --- alarms", topic)

    assert ("CloudWatchAlarms", "UNKNOWN_ACTION", "sns:Publishh is no action in the IAM catalogue") in issues(path)


def test_a_finding_is_kept_only_with_its_reason_next_to_the_statement(tmp_path: Path) -> None:
    declared = "  PollTaskFunction:\n    Type: AWS::Serverless::Function\n    Metadata:\n"
    skip = declared + ("      iam-check:\n        skip:\n          - sid: StaleUploadsUnderPrefix\n"
                       "            issue: UNKNOWN_CONDITION_FOR_ACTION\n            comment: {comment}\n")
    path = mutated(tmp_path, "            - Sid: DashScopeKey\n", STALE_UPLOADS_UNDER_PREFIX)
    text = path.read_text()

    path.write_text(text.replace(declared, skip.format(comment="a reason the reviewer accepted")))
    assert issues(path) == []

    path.write_text(text.replace(declared, skip.format(comment='""')))
    with pytest.raises(SystemExit, match="gives no comment"):
        check_iam.findings(path)
