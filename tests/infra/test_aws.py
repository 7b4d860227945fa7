"""infra/aws/artifact-store.yaml: cfn-lint clean, and deployed into moto it yields the buckets, bucket
policies and least-privilege IAM that it promises."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from cfnlint.api import ManualArgs, lint_file
from moto import mock_aws

from moto_cloudformation import complete_moto_cloudformation

REPO = Path(__file__).resolve().parents[2]
TEMPLATE = REPO / "infra" / "aws" / "artifact-store.yaml"
STACK = "d2v-store"
BUCKETS = {"ArtifactBucketName": "d2v-test-artifacts", "DvcBucketName": "d2v-test-dvc"}
DELETES = {"s3:DeleteObject", "s3:DeleteObjectVersion", "s3:DeleteBucket"}


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


@pytest.fixture(scope="module")
def stack() -> Iterator[dict[str, Any]]:
    """The stack, created once in moto; yields its outputs."""
    with pytest.MonkeyPatch.context() as patch:
        for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_SESSION_TOKEN"):
            patch.delenv(name, raising=False)
        patch.setenv("AWS_ACCESS_KEY_ID", "testing")
        patch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        patch.setenv("AWS_DEFAULT_REGION", "us-east-1")
        with mock_aws(), complete_moto_cloudformation(patch):
            cloudformation = boto3.client("cloudformation")
            cloudformation.create_stack(
                StackName=STACK,
                TemplateBody=TEMPLATE.read_text(),
                Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in BUCKETS.items()],
                Capabilities=["CAPABILITY_NAMED_IAM"],
            )
            described = cloudformation.describe_stacks(StackName=STACK)["Stacks"][0]
            outputs = {o["OutputKey"]: o["OutputValue"] for o in described.get("Outputs", [])}
            yield {"status": described["StackStatus"], **outputs}


def _policy_document(policy_arn: str) -> dict[str, Any]:
    iam = boto3.client("iam")
    version = iam.get_policy(PolicyArn=policy_arn)["Policy"]["DefaultVersionId"]
    document = iam.get_policy_version(PolicyArn=policy_arn, VersionId=version)["PolicyVersion"]["Document"]
    return json.loads(document) if isinstance(document, str) else document


def _allowed(document: dict[str, Any]) -> dict[str, set[str]]:
    """action -> the resources an Allow statement grants it on."""
    allowed: dict[str, set[str]] = {}
    for statement in document["Statement"]:
        if statement["Effect"] == "Allow":
            for action in _as_list(statement["Action"]):
                allowed.setdefault(action, set()).update(_as_list(statement["Resource"]))
    return allowed


def _denied(document: dict[str, Any]) -> set[str]:
    return {a for s in document["Statement"] if s["Effect"] == "Deny" for a in _as_list(s["Action"])}


def test_template_passes_cfn_lint() -> None:
    matches = lint_file(TEMPLATE, config=ManualArgs(regions=["us-east-1"]))
    assert [str(match) for match in matches] == []


def test_stack_deploys_into_moto(stack: dict[str, Any]) -> None:
    assert stack["status"] == "CREATE_COMPLETE"
    assert stack["ArtifactBucketName"] == BUCKETS["ArtifactBucketName"]
    assert stack["TrainingRoleArn"].endswith(f":role/{STACK}-training")


@pytest.mark.parametrize("bucket", sorted(BUCKETS.values()))
def test_buckets_are_versioned_encrypted_and_private(stack: dict[str, Any], bucket: str) -> None:
    s3 = boto3.client("s3")
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
    rules = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"]
    assert rules[0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] in {"aws:kms", "AES256"}
    flags = s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
    assert flags == {"BlockPublicAcls": True, "IgnorePublicAcls": True,
                     "BlockPublicPolicy": True, "RestrictPublicBuckets": True}


def test_lifecycle_expires_noncurrent_versions_and_tiers_old_runs(stack: dict[str, Any]) -> None:
    s3 = boto3.client("s3")
    rules = {r["ID"]: r for r in s3.get_bucket_lifecycle_configuration(
        Bucket=BUCKETS["ArtifactBucketName"])["Rules"]}
    assert rules["expire-noncurrent-versions"]["NoncurrentVersionExpiration"]["NoncurrentDays"] == 90
    tiering = rules["tier-old-runs"]
    assert tiering["Filter"]["Prefix"] == "runs/"
    assert [t["StorageClass"] for t in tiering["Transitions"]] == ["STANDARD_IA", "GLACIER_IR"]
    assert all(rule["Status"] == "Enabled" for rule in rules.values())


@pytest.mark.parametrize("bucket", sorted(BUCKETS.values()))
def test_bucket_policy_requires_tls_and_denies_deletes_to_everyone(stack: dict[str, Any], bucket: str) -> None:
    policy = json.loads(boto3.client("s3").get_bucket_policy(Bucket=bucket)["Policy"])
    arns = {f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"}
    statements = {s["Sid"]: s for s in policy["Statement"]}
    tls = statements["DenyInsecureTransport"]
    assert (tls["Effect"], tls["Principal"], tls["Action"]) == ("Deny", "*", "s3:*")
    assert tls["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert set(tls["Resource"]) == arns
    deletes = statements["DenyDeletesForEveryone"]
    assert (deletes["Effect"], deletes["Principal"]) == ("Deny", "*")
    assert set(deletes["Action"]) == DELETES and set(deletes["Resource"]) == arns
    assert "Condition" not in deletes  # no exception for anyone
    assert not [s for s in policy["Statement"] if s["Effect"] == "Allow"]


def test_training_role_writes_runs_and_dvc_but_never_deletes(stack: dict[str, Any]) -> None:
    iam = boto3.client("iam")
    attached = iam.list_attached_role_policies(RoleName=f"{STACK}-training")["AttachedPolicies"]
    assert [p["PolicyArn"] for p in attached] == [stack["TrainingWritePolicyArn"]]
    document = _policy_document(stack["TrainingWritePolicyArn"])
    allowed = _allowed(document)
    artifacts, dvc = (f"arn:aws:s3:::{name}" for name in BUCKETS.values())
    assert allowed["s3:PutObject"] == {f"{artifacts}/runs/*", f"{artifacts}/pointers/*", f"{dvc}/*"}
    assert allowed["s3:GetObject"] == allowed["s3:PutObject"]
    assert not any("Delete" in action or "*" in action for action in allowed)
    assert DELETES <= _denied(document)


def test_reader_role_only_gets_and_lists(stack: dict[str, Any]) -> None:
    iam = boto3.client("iam")
    attached = iam.list_attached_role_policies(RoleName=f"{STACK}-reader")["AttachedPolicies"]
    assert [p["PolicyArn"] for p in attached] == [stack["ReadOnlyPolicyArn"]]
    document = _policy_document(stack["ReadOnlyPolicyArn"])
    assert set(_allowed(document)) == {"s3:ListBucket", "s3:GetObject", "s3:GetObjectVersion"}
    assert DELETES <= _denied(document)
