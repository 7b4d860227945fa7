"""`artifacts.promoter_profile`: champion pointers move under their own credentials (the promoter
role of infra/aws/artifact-store.yaml), everything else under `profile`."""

from __future__ import annotations

from pathlib import Path

import pytest

from d2v.artifacts.config import ArtifactsConfig, promoter_config
from d2v.artifacts.errors import ArtifactError
from d2v.artifacts.s3 import make_client
from d2v.artifacts.store import ArtifactStore, Metric
from pipelines.flows.decision import Score
from pipelines.flows.publish import promote


@pytest.fixture
def two_profiles(aws_env: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    credentials = tmp_path / "credentials"
    credentials.write_text("[training]\naws_access_key_id = TRAININGKEY\naws_secret_access_key = t\n"
                           "[promoter]\naws_access_key_id = PROMOTERKEY\naws_secret_access_key = p\n")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(credentials))
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")  # environment keys would win over any profile
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")


def _access_key(cfg: ArtifactsConfig) -> str:
    return make_client(cfg)._request_signer._credentials.access_key  # noqa: SLF001 - what signs requests


def test_promotions_sign_with_the_promoter_profile(two_profiles: None) -> None:
    cfg = ArtifactsConfig(uri="s3://bucket/d2v", endpoint_url="http://127.0.0.1:9", profile="training",
                          promoter_profile="promoter")
    assert _access_key(cfg) == "TRAININGKEY"
    assert _access_key(promoter_config(cfg)) == "PROMOTERKEY"
    unset = ArtifactsConfig(uri="s3://bucket/d2v", endpoint_url="http://127.0.0.1:9", profile="training")
    assert promoter_config(unset) == unset


def test_the_retrain_flows_promotion_uses_the_promoter_profile(
    moto_server: str, s3_bucket: str, two_profiles: None  # the bucket is made first, with env keys
) -> None:
    cfg = ArtifactsConfig(uri=f"s3://{s3_bucket}/d2v", endpoint_url=moto_server, profile="training",
                          promoter_profile="promoter")
    store = ArtifactStore.from_config(cfg)
    note = Path(__file__)
    store.publish({"note.py": note}, run_id="candidate", modality="text")
    promote(cfg, "candidate", "text", Score("glue/avg", 0.5, True), None)
    assert store.pointer("text", "champion").run_id == "candidate"
    # A profile that does not exist fails the promotion, naming it: the flow really switched profiles.
    missing = ArtifactsConfig(uri=cfg.uri, endpoint_url=moto_server, profile="training",
                              promoter_profile="no-such-profile")
    with pytest.raises(ArtifactError, match="no-such-profile"):
        promote(missing, "candidate", "text", Score("glue/avg", 0.6, True), "candidate")
    assert store.pointer("text", "champion").metric == Metric("glue/avg", 0.5)
