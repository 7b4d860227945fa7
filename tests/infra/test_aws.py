"""infra/aws/artifact-store.yaml: cfn-lint clean, and deployed into moto it yields the buckets, bucket
policies, Object Lock option and least-privilege IAM that it promises. What the policies decide for
each request (conditional writes included) is tested by test_iam_policies.py with a policy simulator."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from cfnlint.api import ManualArgs, lint_file

from moto_cloudformation import create_stack, deployed_stack, managed_policy_document

REPO = Path(__file__).resolve().parents[2]
TEMPLATE = REPO / "infra" / "aws" / "artifact-store.yaml"
STACK = "d2v-store"
BUCKETS = {"ArtifactBucketName": "d2v-test-artifacts", "DvcBucketName": "d2v-test-dvc"}
DELETES = {"s3:DeleteObject", "s3:DeleteObjectVersion", "s3:DeleteBucket"}


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


@pytest.fixture(scope="module")
def stack() -> Iterator[dict[str, Any]]:
    """The stack with default parameters, created once in moto; yields its outputs."""
    with deployed_stack(TEMPLATE.read_text(), STACK, BUCKETS) as outputs:
        yield outputs


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
    assert stack["PromoterRoleArn"].endswith(f":role/{STACK}-promoter")


@pytest.mark.parametrize("bucket", sorted(BUCKETS.values()))
def test_buckets_are_versioned_encrypted_and_private(stack: dict[str, Any], bucket: str) -> None:
    s3 = boto3.client("s3")
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
    rules = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"]
    assert rules[0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] in {"aws:kms", "AES256"}
    flags = s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
    assert flags == {"BlockPublicAcls": True, "IgnorePublicAcls": True,
                     "BlockPublicPolicy": True, "RestrictPublicBuckets": True}


def test_lifecycle_expires_old_pointer_versions_and_checkpoints_only_and_tiers_old_runs(stack: dict[str, Any]) -> None:
    s3 = boto3.client("s3")
    rules = {r["ID"]: r for r in s3.get_bucket_lifecycle_configuration(
        Bucket=BUCKETS["ArtifactBucketName"])["Rules"]}
    pointers = rules["expire-noncurrent-pointers"]
    assert pointers["Filter"]["Prefix"] == "pointers/"
    assert pointers["NoncurrentVersionExpiration"]["NoncurrentDays"] == 90
    # A noncurrent run version exists only after an accident or an attack: never expired. Only
    # pointers' old versions and pretraining checkpoints (checkpoints/, 30 days) ever expire.
    expiring = [r for r in rules.values() if "NoncurrentVersionExpiration" in r or "Expiration" in r]
    assert sorted(r["Filter"]["Prefix"] for r in expiring) == ["checkpoints/", "pointers/"]
    checkpoints = rules["expire-checkpoints"]
    assert checkpoints["NoncurrentVersionExpiration"]["NoncurrentDays"] == 1
    # moto's CloudFormation drops a rule's ExpirationInDays (the deployed rule above has none), so
    # the current versions' expiry is checked in the template itself.
    template = (REPO / "infra" / "aws" / "artifact-store.yaml").read_text(encoding="utf-8")
    rule = template.split("- Id: expire-checkpoints", 1)[1].split("- Id:", 1)[0]
    assert "ExpirationInDays: !Ref CheckpointExpirationDays" in rule
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


def test_artifact_bucket_policy_keeps_runs_immutable_and_the_champion_to_the_promoter(
        stack: dict[str, Any]) -> None:
    """The shape, and that the promoter's ARN resolved to the deployed role; what each statement
    decides is test_iam_policies.py's."""
    bucket = BUCKETS["ArtifactBucketName"]
    policy = json.loads(boto3.client("s3").get_bucket_policy(Bucket=bucket)["Policy"])
    statements = {s["Sid"]: s for s in policy["Statement"]}
    runs = statements["DenyRunOverwrites"]
    assert (runs["Effect"], runs["Principal"], runs["Action"]) == ("Deny", "*", "s3:PutObject")
    assert runs["Resource"] == f"arn:aws:s3:::{bucket}/runs/*"
    assert runs["Condition"] == {"Null": {"s3:if-none-match": "true"},
                                 "Bool": {"s3:ObjectCreationOperation": "true"}}
    pointers = statements["DenyUnconditionalPointerWrites"]
    assert (pointers["Effect"], pointers["Principal"]) == ("Deny", "*")
    assert pointers["Condition"] == {"Null": {"s3:if-match": "true", "s3:if-none-match": "true"}}
    champion = statements["OnlyPromoterMovesChampion"]
    assert (champion["Effect"], champion["Principal"], champion["Action"]) == ("Deny", "*", "s3:PutObject")
    assert champion["Resource"] == f"arn:aws:s3:::{bucket}/pointers/*/champion.json"
    assert champion["Condition"] == {"ArnNotLike": {"aws:PrincipalArn": stack["PromoterRoleArn"]}}


def test_object_lock_is_off_by_default(stack: dict[str, Any]) -> None:
    s3 = boto3.client("s3")
    with pytest.raises(s3.exceptions.ClientError, match="ObjectLockConfigurationNotFound"):
        s3.get_object_lock_configuration(Bucket=BUCKETS["ArtifactBucketName"])


def test_object_lock_retention_days_locks_the_artifact_bucket_in_governance_mode(stack: dict[str, Any]) -> None:
    buckets = {"ArtifactBucketName": "d2v-test-locked-artifacts", "DvcBucketName": "d2v-test-locked-dvc"}
    locked = create_stack(TEMPLATE.read_text(), "d2v-locked", {**buckets, "ObjectLockRetentionDays": "30"})
    assert locked["status"] == "CREATE_COMPLETE"
    s3 = boto3.client("s3")
    lock = s3.get_object_lock_configuration(Bucket=buckets["ArtifactBucketName"])["ObjectLockConfiguration"]
    retention = lock["Rule"]["DefaultRetention"]
    assert (lock["ObjectLockEnabled"], retention["Mode"], retention["Days"]) == ("Enabled", "GOVERNANCE", 30)
    assert not retention.get("Years")  # moto reports Years: 0 beside Days
    assert s3.get_bucket_versioning(Bucket=buckets["ArtifactBucketName"])["Status"] == "Enabled"
    with pytest.raises(s3.exceptions.ClientError, match="ObjectLockConfigurationNotFound"):
        s3.get_object_lock_configuration(Bucket=buckets["DvcBucketName"])  # content-addressed: no lock


def test_training_role_writes_runs_latest_checkpoints_and_dvc_but_never_a_champion_or_a_delete(stack: dict[str, Any]) -> None:
    iam = boto3.client("iam")
    attached = iam.list_attached_role_policies(RoleName=f"{STACK}-training")["AttachedPolicies"]
    assert [p["PolicyArn"] for p in attached] == [stack["TrainingWritePolicyArn"]]
    document = managed_policy_document(stack["TrainingWritePolicyArn"])
    allowed = _allowed(document)
    artifacts, dvc = (f"arn:aws:s3:::{name}" for name in BUCKETS.values())
    checkpoints = f"{artifacts}/checkpoints/*"  # pretrain.checkpoint_store's mirror
    assert allowed["s3:PutObject"] == {f"{artifacts}/runs/*", f"{artifacts}/pointers/*/latest.json", checkpoints, f"{dvc}/*"}
    assert allowed["s3:GetObject"] == {f"{artifacts}/runs/*", f"{artifacts}/pointers/*", checkpoints, f"{dvc}/*"}
    assert not any("Delete" in action or "*" in action for action in allowed)
    assert DELETES <= _denied(document)
    never = {s["Sid"]: s for s in document["Statement"]}["NeverMoveChampion"]
    assert (never["Effect"], never["Action"], "Condition" in never) == ("Deny", "s3:PutObject", False)
    assert never["Resource"] == f"{artifacts}/pointers/*/champion.json"


def test_promoter_role_moves_only_champions(stack: dict[str, Any]) -> None:
    iam = boto3.client("iam")
    attached = iam.list_attached_role_policies(RoleName=f"{STACK}-promoter")["AttachedPolicies"]
    assert [p["PolicyArn"] for p in attached] == [stack["PromoterPolicyArn"]]
    document = managed_policy_document(stack["PromoterPolicyArn"])
    allowed = _allowed(document)
    artifacts = f"arn:aws:s3:::{BUCKETS['ArtifactBucketName']}"
    assert set(allowed) == {"s3:ListBucket", "s3:GetObject", "s3:PutObject"}
    assert allowed["s3:PutObject"] == {f"{artifacts}/pointers/*/champion.json"}
    assert allowed["s3:GetObject"] == {f"{artifacts}/runs/*", f"{artifacts}/pointers/*"}
    assert allowed["s3:ListBucket"] == {artifacts}  # nothing of the DVC remote
    assert DELETES <= _denied(document)


def test_reader_role_only_gets_and_lists(stack: dict[str, Any]) -> None:
    iam = boto3.client("iam")
    attached = iam.list_attached_role_policies(RoleName=f"{STACK}-reader")["AttachedPolicies"]
    assert [p["PolicyArn"] for p in attached] == [stack["ReadOnlyPolicyArn"]]
    document = managed_policy_document(stack["ReadOnlyPolicyArn"])
    assert set(_allowed(document)) == {"s3:ListBucket", "s3:GetObject", "s3:GetObjectVersion"}
    assert DELETES <= _denied(document)
