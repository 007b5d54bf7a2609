"""Fetching Features published to an OCI registry (``ghcr.io/owner/features/name:1``).

Speaks the OCI distribution API directly: anonymous bearer token, manifest, the one
layer (a tarball of the Feature folder). Fetched Features are cached by digest, so a
Feature fetched once keeps working while the registry is unreachable.
"""

from __future__ import annotations

import hashlib
import json
import re
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import requests

from app import archives, destinations
from app.devcontainer.errors import FeatureError

MANIFEST_TYPES = ", ".join(
    [
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    ]
)
# The distribution spec's grammar: a registry host[:port], path components of lowercase
# letters and digits joined by separators (never "." or ".." alone), a tag or a digest.
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REF = re.compile(
    r"^(?P<registry>[a-z0-9](?:[a-z0-9.-]*[a-z0-9])?(?::[0-9]{1,5})?)"
    rf"/(?P<path>{_COMPONENT}(?:/{_COMPONENT})*)"
    r"(?::(?P<tag>[\w][\w.-]{0,127})|@(?P<digest>sha256:[0-9a-f]{64}))?$"
)
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
MAX_MANIFEST_BYTES = 4 * 1024 * 1024
MAX_LAYER_BYTES = 64 * 1024 * 1024  # a Feature is scripts and small files
MAX_REDIRECTS = 5


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


class _Fetcher:
    """Requests to a registry (and to where it points: its token service, a blob's
    storage) with each destination checked after resolution (app.destinations), https
    only, redirects followed one checked hop at a time, and answers read up to a bound."""

    def __init__(self, ref: OciRef, allowed=()):
        self.ref = ref
        self.session = destinations.checked_session(allowed)

    def get(self, url: str, headers: dict, limit: int) -> tuple[requests.Response, bytes]:
        for _ in range(MAX_REDIRECTS + 1):
            try:
                answer = self.session.get(
                    url, headers=headers, timeout=30, stream=True, allow_redirects=False
                )
            except destinations.Unresolved as exc:
                raise requests.ConnectionError(str(exc)) from None  # unreachable, as offline
            except destinations.DestinationRefused as exc:
                raise FeatureError(
                    f"Feature {self.ref.resource}: refused to fetch {urlsplit(url).netloc}: {exc}"
                ) from None
            if answer.is_redirect and answer.headers.get("Location"):
                url = requests.compat.urljoin(url, answer.headers["Location"])
                answer.close()
                # Credentials for the registry never go to where it redirects.
                headers = {k: v for k, v in headers.items() if k != "Authorization"}
                continue
            return answer, self._read(answer, limit)
        raise FeatureError(f"Feature {self.ref.resource}: too many redirects")

    def _read(self, answer: requests.Response, limit: int) -> bytes:
        body = bytearray()
        for chunk in answer.iter_content(65536):
            body += chunk
            if len(body) > limit:
                answer.close()
                raise FeatureError(
                    f"Feature {self.ref.resource}: the registry sent more than {limit} bytes"
                )
        return bytes(body)

    def get_authorized(self, url: str, headers: dict, limit: int):
        answer, body = self.get(url, headers, limit)
        challenge = answer.headers.get("WWW-Authenticate", "")
        if answer.status_code == 401 and challenge.startswith("Bearer"):
            token = self._token(challenge)
            if token:
                headers["Authorization"] = f"Bearer {token}"
                answer, body = self.get(url, headers, limit)
        return answer, body

    def _token(self, challenge: str) -> str | None:
        params = dict(re.findall(r'(\w+)="([^"]*)"', challenge))
        realm = params.pop("realm", None)
        if not realm:
            return None
        answer, body = self.get(realm + "?" + urlencode(params), {}, 64 * 1024)
        if answer.status_code != 200:
            return None
        try:
            data = json.loads(body)
        except ValueError:
            return None
        return data.get("token") or data.get("access_token") if isinstance(data, dict) else None


def fetch(user_id: str, cache_dir: Path, allowed=()) -> tuple[Path, str]:
    """Return (folder, manifest digest) of the Feature ``user_id``, downloading it if
    needed; ``allowed``: private networks an admin lets Berth fetch from."""
    ref = parse_ref(user_id)
    index_file = cache_dir / "oci-index.json"
    index = json.loads(index_file.read_text()) if index_file.exists() else {}
    key = f"{ref.resource}:{ref.reference}"
    fetcher = _Fetcher(ref, allowed)
    headers = {"Accept": MANIFEST_TYPES}
    base = f"https://{ref.registry}/v2/{ref.namespace}/{ref.id}"
    try:
        manifest_answer, manifest_body = fetcher.get_authorized(
            f"{base}/manifests/{ref.reference}", headers, MAX_MANIFEST_BYTES
        )
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
    try:
        manifest = json.loads(manifest_body)
    except ValueError:
        raise FeatureError(f"Feature {user_id!r}: the registry's manifest is not JSON") from None
    digest = manifest_answer.headers.get("Docker-Content-Digest") or ref.digest or ""
    layers = manifest.get("layers") if isinstance(manifest, dict) else None
    if not layers or not isinstance(layers[0], dict):
        raise FeatureError(f"Feature {user_id!r}: the manifest has no layer")
    layer = str(layers[0].get("digest", ""))
    if not _DIGEST.match(layer):
        # It names a file in Berth's cache: only a sha256 digest is a name.
        raise FeatureError(
            f"Feature {user_id!r}: the layer digest {layer[:80]!r} is not sha256:<hex>"
        )
    folder = cache_dir / "oci" / ref.registry / ref.namespace / ref.id / layer
    if not folder.is_dir():
        blob, content = fetcher.get_authorized(f"{base}/blobs/{layer}", headers, MAX_LAYER_BYTES)
        if blob.status_code != 200:
            raise FeatureError(
                f"Feature {user_id!r}: downloading its layer failed ({blob.status_code})"
            )
        if "sha256:" + hashlib.sha256(content).hexdigest() != layer:
            raise FeatureError(f"Feature {user_id!r}: the layer does not match its digest {layer}")
        folder.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=folder.parent) as tmp:
            archive = Path(tmp) / "feature.tgz"
            archive.write_bytes(content)
            extracted = Path(tmp) / "feature"
            try:
                with tarfile.open(archive) as tar:
                    archives.extract_tar(tar, extracted, MAX_LAYER_BYTES * 8)
            except (tarfile.TarError, archives.UnsafeArchive) as exc:
                raise FeatureError(
                    f"Feature {user_id!r}: its layer is not a safe archive ({exc})"
                ) from None
            extracted.rename(folder)
    index[key] = {"folder": str(folder), "digest": digest}
    index_file.parent.mkdir(parents=True, exist_ok=True)
    index_file.write_text(json.dumps(index, indent=1))
    return folder, digest
