"""Complete moto's CloudFormation for the S3 and IAM features the artifact-store template uses.

moto 5.2's CloudFormation creates an AWS::S3::Bucket with only its BucketEncryption and Tags, has no
AWS::S3::BucketPolicy, and ignores an AWS::IAM::Role's ManagedPolicyArns: the stack reaches
CREATE_COMPLETE while versioning, Object Lock, the public access block, lifecycle rules, bucket
policies and role attachments silently do not exist. On AWS, CloudFormation applies each of them
through the public S3/IAM APIs; `complete_moto_cloudformation` does the same against moto (boto3
calls inside the mock), with the intrinsic functions already resolved by moto. Whatever the template
gets wrong is then rejected by moto's S3/IAM validation or visible when the test reads the state back
with boto3. `deployed_stack`, `create_stack` and the policy readers below are what the tests use.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import boto3
import pytest
from moto import mock_aws
from moto.cloudformation import parsing
from moto.iam.models import Role
from moto.s3.models import FakeBucket


def _lifecycle_rule(cfn_rule: dict[str, Any]) -> dict[str, Any]:
    """One AWS::S3::Bucket LifecycleConfiguration rule -> the PutBucketLifecycleConfiguration shape."""
    rule: dict[str, Any] = {
        "ID": cfn_rule["Id"],
        "Status": cfn_rule["Status"],
        "Filter": {"Prefix": cfn_rule.get("Prefix", "")},
    }
    if "NoncurrentVersionExpiration" in cfn_rule:
        days = cfn_rule["NoncurrentVersionExpiration"]["NoncurrentDays"]
        rule["NoncurrentVersionExpiration"] = {"NoncurrentDays": int(days)}
    if "Transitions" in cfn_rule:
        rule["Transitions"] = [
            {"Days": int(t["TransitionInDays"]), "StorageClass": t["StorageClass"]}
            for t in cfn_rule["Transitions"]
        ]
    if "AbortIncompleteMultipartUpload" in cfn_rule:
        days = cfn_rule["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"]
        rule["AbortIncompleteMultipartUpload"] = {"DaysAfterInitiation": int(days)}
    return rule


def _object_lock(cfn_lock: dict[str, Any]) -> dict[str, Any]:
    """AWS::S3::Bucket ObjectLockConfiguration -> the PutObjectLockConfiguration shape (numbers as ints)."""
    lock: dict[str, Any] = {"ObjectLockEnabled": cfn_lock.get("ObjectLockEnabled", "Enabled")}
    retention = cfn_lock.get("Rule", {}).get("DefaultRetention")
    if retention:
        lock["Rule"] = {"DefaultRetention": {
            key: int(value) if key in ("Days", "Years") else value for key, value in retention.items()}}
    return lock


def _apply_bucket_properties(bucket: str, properties: dict[str, Any], region: str) -> None:
    s3 = boto3.client("s3", region_name=region)
    if "VersioningConfiguration" in properties:
        status = properties["VersioningConfiguration"]["Status"]
        s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": status})
    lock = properties.get("ObjectLockConfiguration")  # None: `!Ref AWS::NoValue`, resolved by moto
    if str(properties.get("ObjectLockEnabled")).lower() == "true" or lock:
        s3.put_object_lock_configuration(Bucket=bucket, ObjectLockConfiguration=_object_lock(lock or {}))
    if "PublicAccessBlockConfiguration" in properties:
        flags = {key: bool(value) for key, value in properties["PublicAccessBlockConfiguration"].items()}
        s3.put_public_access_block(Bucket=bucket, PublicAccessBlockConfiguration=flags)
    if "OwnershipControls" in properties:
        s3.put_bucket_ownership_controls(Bucket=bucket, OwnershipControls=properties["OwnershipControls"])
    if "LifecycleConfiguration" in properties:
        rules = [_lifecycle_rule(rule) for rule in properties["LifecycleConfiguration"]["Rules"]]
        s3.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={"Rules": rules})


class _BucketPolicy:
    """AWS::S3::BucketPolicy, applied with PutBucketPolicy."""

    def __init__(self, bucket: str) -> None:
        self.physical_resource_id = bucket

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::S3::BucketPolicy"

    def is_created(self) -> bool:
        return True

    @classmethod
    def create_from_cloudformation_json(
        cls, resource_name: str, cloudformation_json: dict[str, Any], account_id: str, region_name: str, **_: Any
    ) -> _BucketPolicy:
        properties = cloudformation_json["Properties"]
        s3 = boto3.client("s3", region_name=region_name)
        s3.put_bucket_policy(Bucket=properties["Bucket"], Policy=json.dumps(properties["PolicyDocument"]))
        return cls(properties["Bucket"])


@contextmanager
def complete_moto_cloudformation(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Within this context (and a moto mock), CloudFormation applies the properties listed above."""
    create_bucket = FakeBucket.create_from_cloudformation_json
    create_role = Role.create_from_cloudformation_json
    resource_class = parsing.resource_class_from_type

    def bucket_with_properties(resource_name: str, cloudformation_json: dict[str, Any],
                               account_id: str, region_name: str, **kwargs: Any) -> FakeBucket:
        bucket = create_bucket(resource_name, cloudformation_json, account_id, region_name, **kwargs)
        _apply_bucket_properties(bucket.name, cloudformation_json.get("Properties", {}), region_name)
        return bucket

    def role_with_managed_policies(resource_name: str, cloudformation_json: dict[str, Any],
                                   account_id: str, region_name: str, **kwargs: Any) -> Role:
        role = create_role(resource_name, cloudformation_json, account_id, region_name, **kwargs)
        iam = boto3.client("iam", region_name=region_name)
        for policy_arn in cloudformation_json.get("Properties", {}).get("ManagedPolicyArns", []):
            iam.attach_role_policy(RoleName=role.name, PolicyArn=policy_arn)
        return role

    def with_bucket_policy(resource_type: str) -> Any:
        return _BucketPolicy if resource_type == "AWS::S3::BucketPolicy" else resource_class(resource_type)

    with monkeypatch.context() as patch:
        patch.setattr(FakeBucket, "create_from_cloudformation_json", staticmethod(bucket_with_properties))
        patch.setattr(Role, "create_from_cloudformation_json", staticmethod(role_with_managed_policies))
        patch.setattr(parsing, "resource_class_from_type", with_bucket_policy)
        yield


@contextmanager
def deployed_stack(template: str, stack_name: str, parameters: dict[str, str]) -> Iterator[dict[str, Any]]:
    """Create `template` as `stack_name` in a fresh moto account (no real credentials or endpoint can
    leak in); yields its status and outputs, with the mock active until the context ends, so more
    stacks can be created in the same account with `create_stack`."""
    with pytest.MonkeyPatch.context() as patch:
        for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_SESSION_TOKEN"):
            patch.delenv(name, raising=False)
        patch.setenv("AWS_ACCESS_KEY_ID", "testing")
        patch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        patch.setenv("AWS_DEFAULT_REGION", "us-east-1")
        with mock_aws(), complete_moto_cloudformation(patch):
            yield create_stack(template, stack_name, parameters)


def create_stack(template: str, stack_name: str, parameters: dict[str, str]) -> dict[str, Any]:
    """Create a stack (inside `deployed_stack`'s mock); its status and outputs."""
    cloudformation = boto3.client("cloudformation")
    cloudformation.create_stack(
        StackName=stack_name,
        TemplateBody=template,
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()],
        Capabilities=["CAPABILITY_NAMED_IAM"],
    )
    described = cloudformation.describe_stacks(StackName=stack_name)["Stacks"][0]
    outputs = {o["OutputKey"]: o["OutputValue"] for o in described.get("Outputs", [])}
    return {"status": described["StackStatus"], **outputs}


def role_policy_documents(role_name: str) -> dict[str, dict[str, Any]]:
    """Policy name -> document, for every managed and inline policy of an IAM role (as deployed)."""
    iam = boto3.client("iam")
    documents = {}
    for attached in iam.list_attached_role_policies(RoleName=role_name)["AttachedPolicies"]:
        documents[attached["PolicyName"]] = managed_policy_document(attached["PolicyArn"])
    for name in iam.list_role_policies(RoleName=role_name)["PolicyNames"]:
        documents[name] = _as_document(iam.get_role_policy(RoleName=role_name, PolicyName=name)["PolicyDocument"])
    return documents


def managed_policy_document(policy_arn: str) -> dict[str, Any]:
    iam = boto3.client("iam")
    version = iam.get_policy(PolicyArn=policy_arn)["Policy"]["DefaultVersionId"]
    return _as_document(iam.get_policy_version(PolicyArn=policy_arn, VersionId=version)["PolicyVersion"]["Document"])


def _as_document(document: str | dict[str, Any]) -> dict[str, Any]:
    return json.loads(document) if isinstance(document, str) else document
