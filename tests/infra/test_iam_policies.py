"""What the artifact store's IAM decides, request by request.

infra/aws/artifact-store.yaml is deployed into moto (which resolves its intrinsic functions); each
role's policies and each bucket policy are read back as deployed, and a real IAM policy simulator,
@cloud-copilot/iam-simulate (Node, tests/infra/iam_sim/), evaluates the table below: identity and
bucket policy together, explicit denies, and the S3 condition keys of conditional writes
(s3:if-none-match, s3:if-match, s3:ObjectCreationOperation), which moto's own access control
ignores. The whole table is one simulator process.

Requests are made by role sessions, as jobs make them: the principal is the assumed-role session,
aws:PrincipalArn the role (what AWS puts in the request context), over TLS unless the row says http.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import boto3
import pytest
from moto import settings
from moto.core.authorization import ActionAuthenticatorMixin

from moto_cloudformation import deployed_stack, role_policy_documents

REPO = Path(__file__).resolve().parents[2]
TEMPLATE = REPO / "infra" / "aws" / "artifact-store.yaml"
SIMULATOR = Path(__file__).resolve().parent / "iam_sim"
STACK = "d2v-policies"
ARTIFACTS, DVC = "d2v-sim-artifacts", "d2v-sim-dvc"
BUCKETS = {"ArtifactBucketName": ARTIFACTS, "DvcBucketName": DVC}
ROLES = {"training": f"{STACK}-training", "promoter": f"{STACK}-promoter", "reader": f"{STACK}-reader"}
# Not a role of the template: an operator whose identity policy allows s3:*. What it is refused is
# refused by the bucket policy alone, whatever an identity policy grants.
ADMIN_POLICY = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}

ALLOWED, DENIED, IMPLICIT = "Allowed", "ExplicitlyDenied", "ImplicitlyDenied"

# What a request carries, by the names the table uses.
CONDITIONS: dict[str, dict[str, str]] = {
    "-": {},
    "if-none-match": {"s3:if-none-match": "*"},
    "if-match": {"s3:if-match": '"0123456789abcdef0123456789abcdef"'},
    "upload-part": {"s3:ObjectCreationOperation": "false"},  # UploadPart: no conditional header
    "http": {"aws:SecureTransport": "false"},
    "prefix=runs/": {"s3:prefix": "runs/"},
    "prefix=pointers/": {"s3:prefix": "pointers/"},
    "prefix=reports/": {"s3:prefix": "reports/"},
    "prefix=checkpoints/": {"s3:prefix": "checkpoints/image/"},
}


class Row(NamedTuple):
    who: str  # training | promoter | reader | admin
    action: str  # without the s3: prefix
    target: str  # "<bucket>/<key>" or "<bucket>" (ARTIFACTS, DVC)
    condition: str  # a key of CONDITIONS
    expected: str  # ALLOWED | DENIED (an explicit Deny) | IMPLICIT (no Allow)
    bucket_policy: bool = True  # False: the identity policies alone, as if the bucket policy were gone

    @property
    def id(self) -> str:
        target = self.target.replace(ARTIFACTS, "art").replace(DVC, "dvc")
        alone = "" if self.bucket_policy else "identity-alone-"
        return f"{alone}{self.who}-{self.action}-{target}-{self.condition}"


A, D = ARTIFACTS, DVC
TABLE = [
    # training: reads everything it needs, creates new runs only, moves only `latest`, never deletes
    Row("training", "GetObject", f"{A}/runs/r1/model.pt", "-", ALLOWED),
    Row("training", "GetObject", f"{A}/pointers/image/champion.json", "-", ALLOWED),
    Row("training", "ListBucket", A, "prefix=runs/", ALLOWED),
    Row("training", "ListBucket", A, "prefix=reports/", IMPLICIT),
    Row("training", "PutObject", f"{A}/runs/r1/model.pt", "if-none-match", ALLOWED),
    Row("training", "PutObject", f"{A}/runs/r1/model.pt", "-", DENIED),
    Row("training", "PutObject", f"{A}/runs/r1/model.pt", "if-match", DENIED),  # an overwrite all the same
    Row("training", "PutObject", f"{A}/runs/r1/model.pt", "upload-part", ALLOWED),
    Row("training", "AbortMultipartUpload", f"{A}/runs/r1/model.pt", "-", ALLOWED),
    Row("training", "PutObject", f"{A}/pointers/image/latest.json", "if-match", ALLOWED),
    Row("training", "PutObject", f"{A}/pointers/image/latest.json", "if-none-match", ALLOWED),
    Row("training", "PutObject", f"{A}/pointers/image/latest.json", "-", DENIED),
    Row("training", "PutObject", f"{A}/pointers/image/champion.json", "if-match", DENIED),
    Row("training", "PutObject", f"{A}/pointers/image/champion.json", "if-none-match", DENIED),
    Row("training", "PutObject", f"{A}/pointers/image/other.json", "if-match", IMPLICIT),
    Row("training", "PutObject", f"{A}/reports/index.html", "if-none-match", IMPLICIT),
    Row("training", "DeleteObject", f"{A}/runs/r1/model.pt", "-", DENIED),
    # pretrain.checkpoint_store: mirror, list and fetch a run's checkpoints; pruning them is refused
    Row("training", "PutObject", f"{A}/checkpoints/image/0123/step00000100/checkpoint.ab.pt", "-", ALLOWED),
    Row("training", "PutObject", f"{A}/checkpoints/image/0123/latest.json", "-", ALLOWED),
    Row("training", "GetObject", f"{A}/checkpoints/image/0123/latest.json", "-", ALLOWED),
    Row("training", "ListBucket", A, "prefix=checkpoints/", ALLOWED),
    Row("training", "DeleteObject", f"{A}/checkpoints/image/0123/step00000100/checkpoint.ab.pt", "-", DENIED),
    Row("reader", "PutObject", f"{A}/checkpoints/image/0123/latest.json", "-", IMPLICIT),
    Row("training", "DeleteObjectVersion", f"{A}/pointers/image/latest.json", "-", DENIED),
    Row("training", "GetObject", f"{A}/runs/r1/model.pt", "http", DENIED),
    Row("training", "ListBucket", D, "-", ALLOWED),
    Row("training", "PutObject", f"{D}/files/md5/ab/cdef", "-", ALLOWED),  # DVC: content-addressed
    Row("training", "GetObject", f"{D}/files/md5/ab/cdef", "-", ALLOWED),
    Row("training", "DeleteObject", f"{D}/files/md5/ab/cdef", "-", DENIED),
    # promoter: reads runs and pointers, moves only `champion` by compare-and-swap
    Row("promoter", "PutObject", f"{A}/pointers/text/champion.json", "if-match", ALLOWED),
    Row("promoter", "PutObject", f"{A}/pointers/text/champion.json", "if-none-match", ALLOWED),  # the first
    Row("promoter", "PutObject", f"{A}/pointers/text/champion.json", "-", DENIED),
    Row("promoter", "PutObject", f"{A}/pointers/text/latest.json", "if-match", IMPLICIT),  # publish's pointer
    Row("promoter", "PutObject", f"{A}/runs/x/y", "if-none-match", IMPLICIT),
    Row("promoter", "GetObject", f"{A}/runs/x/manifest.json", "-", ALLOWED),
    Row("promoter", "GetObject", f"{A}/pointers/text/champion.json", "-", ALLOWED),
    Row("promoter", "ListBucket", A, "prefix=pointers/", ALLOWED),
    Row("promoter", "DeleteObject", f"{A}/pointers/text/champion.json", "-", DENIED),
    Row("promoter", "PutObject", f"{D}/files/md5/ab/cdef", "-", IMPLICIT),
    Row("promoter", "GetObject", f"{D}/files/md5/ab/cdef", "-", IMPLICIT),
    # reader: get and list only
    Row("reader", "GetObject", f"{A}/runs/r1/model.pt", "-", ALLOWED),
    Row("reader", "GetObjectVersion", f"{A}/pointers/image/champion.json", "-", ALLOWED),
    Row("reader", "ListBucket", A, "-", ALLOWED),
    Row("reader", "GetObject", f"{D}/files/md5/ab/cdef", "-", ALLOWED),
    Row("reader", "PutObject", f"{A}/runs/r2/model.pt", "if-none-match", IMPLICIT),
    Row("reader", "PutObject", f"{A}/pointers/image/latest.json", "if-match", IMPLICIT),
    Row("reader", "PutObject", f"{A}/pointers/image/champion.json", "if-match", DENIED),  # the bucket policy
    Row("reader", "PutObject", f"{D}/files/md5/ab/cdef", "-", IMPLICIT),
    Row("reader", "DeleteObject", f"{A}/runs/r1/model.pt", "-", DENIED),
    # admin (s3:* in its identity policy): the bucket policy alone
    Row("admin", "GetObject", f"{A}/runs/r1/model.pt", "-", ALLOWED),
    Row("admin", "GetObject", f"{A}/runs/r1/model.pt", "http", DENIED),
    Row("admin", "PutObject", f"{D}/files/md5/ab/cdef", "http", DENIED),
    Row("admin", "PutObject", f"{A}/runs/r1/model.pt", "if-none-match", ALLOWED),
    Row("admin", "PutObject", f"{A}/runs/r1/model.pt", "-", DENIED),
    Row("admin", "PutObject", f"{A}/runs/r1/model.pt", "upload-part", ALLOWED),
    Row("admin", "PutObject", f"{A}/pointers/image/latest.json", "if-match", ALLOWED),
    Row("admin", "PutObject", f"{A}/pointers/image/latest.json", "-", DENIED),
    Row("admin", "PutObject", f"{A}/pointers/image/champion.json", "if-match", DENIED),
    Row("admin", "DeleteObject", f"{A}/runs/r1/model.pt", "-", DENIED),
    Row("admin", "DeleteObjectVersion", f"{A}/runs/r1/model.pt", "-", DENIED),
    Row("admin", "DeleteBucket", A, "-", DENIED),
    Row("admin", "DeleteObject", f"{D}/files/md5/ab/cdef", "-", DENIED),
]
# Defence in depth: each role's own policy refuses what matters even without the bucket policy
# (a bucket policy edited by hand, or a copy of the bucket made without it).
TABLE += [
    Row("training", "PutObject", f"{A}/runs/r1/model.pt", "-", DENIED, bucket_policy=False),
    Row("training", "PutObject", f"{A}/runs/r1/model.pt", "if-none-match", ALLOWED, bucket_policy=False),
    Row("training", "PutObject", f"{A}/runs/r1/model.pt", "upload-part", ALLOWED, bucket_policy=False),
    Row("training", "PutObject", f"{A}/pointers/image/latest.json", "-", DENIED, bucket_policy=False),
    Row("training", "PutObject", f"{A}/pointers/image/latest.json", "if-match", ALLOWED, bucket_policy=False),
    Row("training", "PutObject", f"{A}/pointers/image/champion.json", "if-match", DENIED, bucket_policy=False),
    Row("training", "DeleteObject", f"{A}/runs/r1/model.pt", "-", DENIED, bucket_policy=False),
    Row("promoter", "PutObject", f"{A}/pointers/text/champion.json", "-", DENIED, bucket_policy=False),
    Row("promoter", "PutObject", f"{A}/pointers/text/champion.json", "if-match", ALLOWED, bucket_policy=False),
    Row("promoter", "DeleteObject", f"{A}/pointers/text/champion.json", "-", DENIED, bucket_policy=False),
    Row("reader", "DeleteObject", f"{A}/runs/r1/model.pt", "-", DENIED, bucket_policy=False),
]


def _request(row: Row, principals: dict[str, tuple[str, str]], account: str) -> dict[str, Any]:
    """The simulator's request for one row: who (session and role ARNs), what, on which ARN, with what."""
    session_arn, role_arn = principals[row.who]
    bucket = row.target.split("/", 1)[0]
    context = {"aws:SecureTransport": "true", "aws:PrincipalArn": role_arn}
    if row.action == "PutObject":
        context["s3:ObjectCreationOperation"] = "true"  # PutObject, CompleteMultipartUpload
    context.update(CONDITIONS[row.condition])
    return {"id": row.id, "identity": row.who, "resourcePolicy": bucket if row.bucket_policy else None,
            "principal": session_arn, "action": f"s3:{row.action}", "resource": f"arn:aws:s3:::{row.target}",
            "accountId": account, "context": context}


@pytest.fixture(scope="module")
def simulator() -> Path:
    """tests/infra/iam_sim with its node_modules installed (`npm ci`, again only when the lock changes)."""
    if shutil.which("node") is None:
        pytest.skip("node is not installed: the IAM policy simulator (@cloud-copilot/iam-simulate) runs on "
                    "Node.js; `make setup` installs it (nodejs in infra/apt-packages.txt)")
    lock = hashlib.sha256((SIMULATOR / "package-lock.json").read_bytes()).hexdigest()
    stamp = SIMULATOR / "node_modules" / ".d2v-package-lock.sha256"
    if stamp.is_file() and stamp.read_text() == lock:
        return SIMULATOR
    npm = shutil.which("npm")
    if npm is None:
        pytest.fail("node is installed but npm is not: install npm (it installs the IAM policy simulator "
                    f"pinned in {SIMULATOR.relative_to(REPO)}/package-lock.json)")
    command = [npm, "ci", "--prefix", str(SIMULATOR), "--no-audit", "--no-fund", "--ignore-scripts"]
    try:
        subprocess.run(command, check=True, capture_output=True, text=True, timeout=300)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        output = "\n".join(str(part)[-2000:] for part in (exc.stdout, exc.stderr) if part)
        pytest.fail(f"`{' '.join(command[1:])}` failed; it needs the npm registry (or a warm npm cache) "
                    f"to install @cloud-copilot/iam-simulate:\n{output}")
    stamp.write_text(lock)
    return SIMULATOR


@pytest.fixture(scope="module")
def deployed() -> Iterator[dict[str, Any]]:
    """The stack in moto; yields its outputs plus what the simulator needs: the role ARNs, each
    role's policy documents and the bucket policies, as deployed."""
    with deployed_stack(TEMPLATE.read_text(), STACK, BUCKETS) as outputs:
        iam, s3 = boto3.client("iam"), boto3.client("s3")
        roles = {who: iam.get_role(RoleName=name)["Role"]["Arn"] for who, name in ROLES.items()}
        account = roles["training"].split(":")[4]
        roles["admin"] = f"arn:aws:iam::{account}:role/ops-admin"
        identities = {who: [{"name": name, "policy": document}
                            for name, document in role_policy_documents(ROLES[who]).items()]
                      for who in ROLES}
        identities["admin"] = [{"name": "s3-admin", "policy": ADMIN_POLICY}]
        bucket_policies = {bucket: json.loads(s3.get_bucket_policy(Bucket=bucket)["Policy"])
                           for bucket in (ARTIFACTS, DVC)}
        yield {**outputs, "account": account, "roles": roles, "identities": identities,
               "bucket_policies": bucket_policies}


@pytest.fixture(scope="module")
def decisions(simulator: Path, deployed: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Row id -> the simulator's answer, for the whole table in one node process."""
    principals = {who: (arn.replace(":iam::", ":sts::").replace(":role/", ":assumed-role/") + "/session", arn)
                  for who, arn in deployed["roles"].items()}
    batch = {"identities": deployed["identities"], "resourcePolicies": deployed["bucket_policies"],
             "requests": [_request(row, principals, deployed["account"]) for row in TABLE]}
    done = subprocess.run(["node", str(simulator / "simulate.mjs")], input=json.dumps(batch),
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, f"simulate.mjs failed ({done.returncode}):\n{done.stderr[-3000:]}"
    return {answer["id"]: answer for answer in json.loads(done.stdout)}


def test_table_rows_are_distinct() -> None:
    assert len({row.id for row in TABLE}) == len(TABLE)


@pytest.mark.parametrize("row", TABLE, ids=[row.id for row in TABLE])
def test_decision(decisions: dict[str, dict[str, Any]], row: Row) -> None:
    answer = decisions[row.id]
    assert answer["decision"] != "Error", f"the simulator refused the request: {answer.get('errors')}"
    assert answer["decision"] == row.expected


def test_champion_is_the_promoter_roles_alone_even_by_the_bucket_policy(deployed: dict[str, Any]) -> None:
    """The bucket policy names the deployed promoter role, and only it (no wildcard)."""
    statements = {s["Sid"]: s for s in deployed["bucket_policies"][ARTIFACTS]["Statement"]}
    condition = statements["OnlyPromoterMovesChampion"]["Condition"]
    assert condition == {"ArnNotLike": {"aws:PrincipalArn": deployed["roles"]["promoter"]}}
    assert "*" not in deployed["roles"]["promoter"]


# moto's own IAM access control, on real S3 requests signed with each role's session credentials.
# moto evaluates identity policies, and a bucket policy's Deny statements, but no condition key: a
# conditional statement always applies there (so the TLS deny would refuse every object request).
# It can therefore check only the rows that need no condition, with the bucket policy lifted; the
# table above is the reference, this is the roles' policies enforced on the wire.
MOTO_ROWS = [
    ("reader", "get", "runs/r1/model.pt", True),
    ("reader", "put", "runs/r2/model.pt", False),
    ("reader", "put", "pointers/image/latest.json", False),
    ("training", "get", "pointers/image/champion.json", True),
    ("training", "put", "pointers/image/champion.json", False),
    ("training", "delete", "runs/r1/model.pt", False),
    ("promoter", "get", "runs/r1/model.pt", True),
    ("promoter", "put", "runs/r1/other.pt", False),
    ("promoter", "delete", "pointers/image/champion.json", False),
]


@pytest.fixture(scope="module")
def role_sessions(deployed: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """An S3 client per role (sts:AssumeRole), the objects the rows read, and the artifact bucket's
    policy lifted for as long as the rows run (see above)."""
    s3 = boto3.client("s3")
    s3.delete_bucket_policy(Bucket=ARTIFACTS)
    for key in ("runs/r1/model.pt", "pointers/image/champion.json"):
        s3.put_object(Bucket=ARTIFACTS, Key=key, Body=b"{}")
    sts = boto3.client("sts")
    clients = {}
    for who in ("training", "promoter", "reader"):
        creds = sts.assume_role(RoleArn=deployed["roles"][who], RoleSessionName=who)["Credentials"]
        clients[who] = boto3.client("s3", aws_access_key_id=creds["AccessKeyId"],
                                    aws_secret_access_key=creds["SecretAccessKey"],
                                    aws_session_token=creds["SessionToken"])
    yield clients
    s3.put_bucket_policy(Bucket=ARTIFACTS, Policy=json.dumps(deployed["bucket_policies"][ARTIFACTS]))


@pytest.mark.parametrize(("who", "verb", "key", "allowed"), MOTO_ROWS,
                         ids=[f"{who}-{verb}-{key}" for who, verb, key, _ in MOTO_ROWS])
def test_moto_access_control_enforces_the_unconditional_rows(
        role_sessions: dict[str, Any], monkeypatch: pytest.MonkeyPatch, who: str, verb: str, key: str,
        allowed: bool) -> None:
    monkeypatch.setattr(settings, "INITIAL_NO_AUTH_ACTION_COUNT", 0)  # access control on, every request
    monkeypatch.setattr(ActionAuthenticatorMixin, "request_count", 0)
    s3 = role_sessions[who]
    call = {"get": lambda: s3.get_object(Bucket=ARTIFACTS, Key=key),
            "put": lambda: s3.put_object(Bucket=ARTIFACTS, Key=key, Body=b"x"),
            "delete": lambda: s3.delete_object(Bucket=ARTIFACTS, Key=key)}[verb]
    if allowed:
        call()
    else:
        with pytest.raises(s3.exceptions.ClientError, match="AccessDenied"):
            call()
