"""Fetching Features published to an OCI registry (``ghcr.io/owner/features/name:1``).

Speaks the OCI distribution API directly: anonymous bearer token, manifest, the one
layer (a tarball of the Feature folder). Fetched Features are cached by digest, so a
Feature fetched once keeps working while the registry is unreachable.
"""

from __future__ import annotations

import json
import re
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

import requests

from app.devcontainer.errors import FeatureError

MANIFEST_TYPES = ", ".join(
    [
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    ]
)
_REF = re.compile(
    r"^(?P<registry>[^/]+)/(?P<path>.+?)(?::(?P<tag>[\w][\w.-]{0,127})|@(?P<digest>sha256:[0-9a-f]{64}))?$"
)


@dataclass(frozen=True)
class OciRef:
    registry: str
    namespace: str
    id: str
    tag: str = "latest"
    digest: str | None = None

    @property
    def resource(self) -> str:
        return f"{self.registry}/{self.namespace}/{self.id}"

    @property
    def reference(self) -> str:
        return self.digest or self.tag


def parse_ref(user_id: str) -> OciRef:
    match = _REF.match(user_id.strip().lower())
    if not match or "/" not in match.group("path"):
        raise FeatureError(f"{user_id!r} is not a Feature reference like ghcr.io/owner/repo/name:1")
    namespace, _, name = match.group("path").rpartition("/")
    return OciRef(
        match.group("registry"),
        namespace,
        name,
        match.group("tag") or "latest",
        match.group("digest"),
    )


def _token(session: requests.Session, challenge: str) -> str | None:
    params = dict(re.findall(r'(\w+)="([^"]*)"', challenge))
    realm = params.pop("realm", None)
    if not realm:
        return None
    answer = session.get(realm, params=params, timeout=15)
    answer.raise_for_status()
    body = answer.json()
    return body.get("token") or body.get("access_token")


def _get(session: requests.Session, url: str, headers: dict) -> requests.Response:
    answer = session.get(url, headers=headers, timeout=30)
    if answer.status_code == 401 and "Bearer" in answer.headers.get("WWW-Authenticate", ""):
        token = _token(session, answer.headers["WWW-Authenticate"])
        if token:
            headers["Authorization"] = f"Bearer {token}"
            answer = session.get(url, headers=headers, timeout=30)
    return answer


def fetch(user_id: str, cache_dir: Path) -> tuple[Path, str]:
    """Return (folder, manifest digest) of the Feature ``user_id``, downloading it if needed."""
    ref = parse_ref(user_id)
    index_file = cache_dir / "oci-index.json"
    index = json.loads(index_file.read_text()) if index_file.exists() else {}
    key = f"{ref.resource}:{ref.reference}"
    session = requests.Session()
    headers = {"Accept": MANIFEST_TYPES}
    base = f"https://{ref.registry}/v2/{ref.namespace}/{ref.id}"
    try:
        manifest_answer = _get(session, f"{base}/manifests/{ref.reference}", headers)
    except requests.RequestException as exc:
        cached = index.get(key)
        if cached and Path(cached["folder"]).is_dir():
            return Path(cached["folder"]), cached["digest"]
        raise FeatureError(
            f"Feature {user_id!r} cannot be fetched: registry {ref.registry} is unreachable "
            f"({type(exc).__name__}). Use a local Feature folder instead, or allow access to "
            "the registry.",
            property=f"features.{user_id}",
        ) from None
    if manifest_answer.status_code == 404:
        raise FeatureError(
            f"Feature {user_id!r} does not exist in {ref.registry}", property=f"features.{user_id}"
        )
    if manifest_answer.status_code != 200:
        raise FeatureError(
            f"Feature {user_id!r}: {ref.registry} answered {manifest_answer.status_code}",
            property=f"features.{user_id}",
        )
    manifest = manifest_answer.json()
    digest = manifest_answer.headers.get("Docker-Content-Digest") or ref.digest or ""
    layers = manifest.get("layers") or []
    if not layers:
        raise FeatureError(f"Feature {user_id!r}: the manifest has no layer")
    folder = cache_dir / "oci" / ref.registry / ref.namespace / ref.id / layers[0]["digest"]
    if not folder.is_dir():
        blob = _get(session, f"{base}/blobs/{layers[0]['digest']}", headers)
        if blob.status_code != 200:
            raise FeatureError(
                f"Feature {user_id!r}: downloading its layer failed ({blob.status_code})"
            )
        folder.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=folder.parent) as tmp:
            archive = Path(tmp) / "feature.tgz"
            archive.write_bytes(blob.content)
            extracted = Path(tmp) / "feature"
            with tarfile.open(archive) as tar:
                tar.extractall(extracted, filter="data")
            extracted.rename(folder)
    index[key] = {"folder": str(folder), "digest": digest}
    index_file.parent.mkdir(parents=True, exist_ok=True)
    index_file.write_text(json.dumps(index, indent=1))
    return folder, digest
