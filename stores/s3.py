"""A creditor area under a key prefix in an S3 bucket (AWS or any S3-compatible server).

S3 has no rename and no locks, so the two guarantees the pipeline needs come from conditional
writes: `If-None-Match: *` makes a PUT fail when the key exists. That is how a file is claimed
once when several workers poll the same area, and how `move` never overwrites. Folders are key
prefixes; a listing shows only the direct children of the folder (Delimiter "/"), page by page.

botocore already retries throttling and 5xx responses with backoff ("standard" mode); what is
left after its retries is reported as StoreUnavailable (try later) or StoreError (will not heal).
"""

from __future__ import annotations

import hashlib
import logging
import time
from datetime import UTC
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, ConnectionError as BotoConnectionError
from pydantic import SecretStr

from creditflow.stores.base import (
    AlreadyClaimed,
    StoredFile,
    StoreError,
    StoreUnavailable,
    numbered_names,
    safe_name,
)

log = logging.getLogger(__name__)

_MISSING = {"NoSuchKey", "404", "NotFound"}
_TRANSIENT = {"SlowDown", "Throttling", "ThrottlingException", "RequestTimeout", "RequestTimeTooSkewed",
              "InternalError", "ServiceUnavailable", "503", "500", "502", "504"}
_TAKEN = {"PreconditionFailed", "412", "ConditionalRequestConflict"}  # If-None-Match refused
_CLAIM_META = "creditflow-moved-from"  # marks who moved an object here, to tell a racer from a clash


def _secret(value: SecretStr | str | None) -> str | None:
    return value.get_secret_value() if isinstance(value, SecretStr) else value


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


class S3Store:
    """One creditor area: keys `<prefix>/<folder>/<name>` in `bucket`. No request until first use."""

    kind = "s3"

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        client: Any = None,
        endpoint_url: str | None = None,
        region: str | None = None,
        addressing_style: str | None = None,
        access_key_id: SecretStr | str | None = None,
        secret_access_key: SecretStr | str | None = None,
        session_token: SecretStr | str | None = None,
        profile: str | None = None,
        max_attempts: int = 5,
        connect_timeout: float = 10.0,
        read_timeout: float = 60.0,
        page_size: int = 1000,
        claim_grace: float = 2.0,
    ):
        if not bucket:
            raise StoreError("an S3 store needs a bucket")
        self.bucket = bucket
        # the prefix is config, not remote data, but each part must still be a plain name
        parts = [p for p in prefix.split("/") if p]
        self.prefix = "/".join(safe_name(p) for p in parts)
        self.page_size = page_size
        self.claim_grace = claim_grace
        if client is None:
            # Without explicit keys boto3 uses its usual chain: AWS_* environment, profile, role.
            session = boto3.session.Session(
                aws_access_key_id=_secret(access_key_id),
                aws_secret_access_key=_secret(secret_access_key),
                aws_session_token=_secret(session_token),
                region_name=region,
                profile_name=profile,
            )
            s3_config: dict[str, str] = {"addressing_style": addressing_style} if addressing_style else {}
            client = session.client(
                "s3", endpoint_url=endpoint_url,
                config=Config(
                    retries={"max_attempts": max_attempts, "mode": "standard"},
                    connect_timeout=connect_timeout, read_timeout=read_timeout, s3=s3_config or None,
                ),
            )
        self.client = client

    def __repr__(self) -> str:
        return f"S3Store('s3://{self.bucket}/{self.prefix}')"

    # -- keys ----------------------------------------------------------------------------------

    def _folder_key(self, folder: str) -> str:
        parts = [safe_name(part) for part in folder.split("/")]
        return "/".join([self.prefix, *parts] if self.prefix else parts)

    def _key(self, folder: str, name: str) -> str:
        return f"{self._folder_key(folder)}/{safe_name(name)}"

    def describe(self, folder: str, name: str) -> str:
        return f"s3://{self.bucket}/{self._key(folder, name)}"

    def _error(self, what: str, exc: Exception) -> StoreError:
        """botocore's error as ours: transient ones say so, and carry no credentials either way."""
        if isinstance(exc, ClientError):
            code = _code(exc)
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            message = exc.response.get("Error", {}).get("Message", "")
            text = f"{what} failed on s3://{self.bucket}: {code or status} {message}".rstrip()
            if code in _TRANSIENT or (isinstance(status, int) and status >= 500):
                return StoreUnavailable(text)
            return StoreError(text)
        if isinstance(exc, BotoConnectionError):
            return StoreUnavailable(f"{what} failed on s3://{self.bucket}: {type(exc).__name__}: {exc}")
        return StoreError(f"{what} failed on s3://{self.bucket}: {type(exc).__name__}: {exc}")

    # -- FileStore -----------------------------------------------------------------------------

    def list(self, folder: str) -> list[StoredFile]:
        """The folder's direct children, every page of them (S3 returns at most 1,000 a request)."""
        folder_prefix = self._folder_key(folder) + "/"
        entries = []
        try:
            paginator = self.client.get_paginator("list_objects_v2")
            pages = paginator.paginate(Bucket=self.bucket, Prefix=folder_prefix, Delimiter="/",
                                       PaginationConfig={"PageSize": self.page_size})
            for page in pages:
                for obj in page.get("Contents", []):
                    name = obj["Key"][len(folder_prefix):]
                    if not name:
                        continue  # the folder's own marker object
                    try:
                        safe_name(name)
                    except StoreError:
                        log.warning("%s: skipped an unsafe key %r", self, obj["Key"])
                        continue
                    modified = obj["LastModified"].astimezone(UTC)
                    entries.append(StoredFile(name, int(obj["Size"]), modified))
        except (ClientError, BotoCoreError) as exc:
            raise self._error(f"list {folder}", exc) from None
        return sorted(entries, key=lambda f: (f.modified, f.name))

    def read(self, folder: str, name: str) -> bytes:
        key = self._key(folder, name)
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=key)
            return response["Body"].read()
        except (ClientError, BotoCoreError) as exc:
            raise self._error(f"read {folder}/{name}", exc) from None

    def exists(self, folder: str, name: str) -> bool:
        key = self._key(folder, name)
        try:
            self.client.head_object(Bucket=self.bucket, Key=key)
            return True
        except ClientError as exc:
            if _code(exc) in _MISSING:
                return False
            raise self._error(f"exists {folder}/{name}", exc) from None
        except BotoCoreError as exc:
            raise self._error(f"exists {folder}/{name}", exc) from None

    def write(self, folder: str, name: str, data: bytes, *, create_only: bool = False,
              metadata: dict[str, str] | None = None) -> str:
        """One PUT: S3 shows the whole object or nothing, so no temporary name is needed.

        With `create_only` the PUT carries `If-None-Match: *`: when the key exists already, the
        server refuses it and AlreadyClaimed is raised, so of two workers exactly one creates it.
        """
        key = self._key(folder, name)
        extra: dict[str, Any] = {"IfNoneMatch": "*"} if create_only else {}
        if metadata:
            extra["Metadata"] = metadata
        try:
            self.client.put_object(Bucket=self.bucket, Key=key, Body=data, **extra)
        except ClientError as exc:
            if create_only and _code(exc) in _TAKEN:
                raise AlreadyClaimed(f"{self.describe(folder, name)} already exists") from None
            raise self._error(f"write {folder}/{name}", exc) from None
        except BotoCoreError as exc:
            raise self._error(f"write {folder}/{name}", exc) from None
        return self.describe(folder, name)

    def move(self, folder: str, name: str, to_folder: str, to_name: str | None = None) -> str:
        """Claim-safe move: conditional create of the target, then delete the source.

        The target is written with `If-None-Match: *` and a marker naming the source object
        (key + ETag). When the create is refused, the existing target either carries our marker
        (another worker is moving this very file: AlreadyClaimed) or not (an unrelated file has
        that name: try the next numbered name, as the local store does).

        The copy is a GET + conditional PUT, not CopyObject: conditional CopyObject is recent on
        AWS and ignored by moto and other S3-compatible servers, which would silently overwrite.
        Fine for billing and bank files (megabytes); a multi-GB object would want CopyObject.
        """
        source_key = self._key(folder, name)
        wanted = safe_name(to_name or name)
        what = f"move {folder}/{name} to {to_folder}"
        try:
            source = self.client.get_object(Bucket=self.bucket, Key=source_key)
            body = source["Body"].read()
        except ClientError as exc:
            if _code(exc) in _MISSING:
                gone = f"{self.describe(folder, name)} is gone: moved by someone else"
                raise AlreadyClaimed(gone) from None
            raise self._error(what, exc) from None
        except BotoCoreError as exc:
            raise self._error(what, exc) from None
        etag = source.get("ETag", "")
        # a later upload of the same bytes under the same name is a new file, not a racer's move
        stamp = source["LastModified"].astimezone(UTC).isoformat() if source.get("LastModified") else ""
        marker = hashlib.sha256(f"{etag}:{stamp}:{source_key}".encode()).hexdigest()  # ASCII header
        metadata = {**source.get("Metadata", {}), _CLAIM_META: marker}
        put_extra: dict[str, Any] = {"Metadata": metadata}
        if source.get("ContentType"):
            put_extra["ContentType"] = source["ContentType"]

        for candidate in numbered_names(wanted):
            target_key = self._key(to_folder, candidate)
            try:
                self.client.put_object(Bucket=self.bucket, Key=target_key, Body=body,
                                       IfNoneMatch="*", **put_extra)
                break
            except ClientError as exc:
                if _code(exc) not in _TAKEN:
                    raise self._error(what, exc) from None
            except BotoCoreError as exc:
                raise self._error(what, exc) from None
            if self._claimed_by(target_key, marker) and self._source_goes_away(source_key, etag):
                raise AlreadyClaimed(f"{self.describe(folder, name)} was moved to "
                                     f"{self.describe(to_folder, candidate)} by someone else")

        self._delete_copied(source_key, etag, folder, what)
        return self.describe(to_folder, candidate)

    def _delete_copied(self, source_key: str, etag: str, folder: str, what: str) -> None:
        """Delete the source we copied; with IfMatch, a newer upload under the same name stays."""
        try:
            try:
                self.client.delete_object(Bucket=self.bucket, Key=source_key, IfMatch=etag)
            except ClientError as exc:
                if _code(exc) not in {"NotImplemented", "InvalidArgument", "InvalidRequest", "501"}:
                    raise
                # a server without conditional deletes: plain delete (a re-upload in between is lost)
                self.client.delete_object(Bucket=self.bucket, Key=source_key)
        except ClientError as exc:
            if _code(exc) in _MISSING:
                pass  # a racer deleted it after we both copied; our copy stands
            elif _code(exc) in {"PreconditionFailed", "412"}:
                log.warning("%s: %s changed while being moved; the new version stays in %s",
                            self, source_key, folder)
            else:
                raise self._error(what, exc) from None
        except BotoCoreError as exc:
            raise self._error(what, exc) from None

    def _source_goes_away(self, source_key: str, etag: str) -> bool:
        """Does the source disappear (or change) within `claim_grace` seconds?

        A racer that wrote the target deletes the source right after. A source that stays means
        the marked target came from an earlier, identical upload moved within the same second
        (S3 times have whole seconds): then it is an unrelated file and we take the next name.
        """
        deadline = time.monotonic() + self.claim_grace
        while True:
            try:
                head = self.client.head_object(Bucket=self.bucket, Key=source_key)
            except ClientError as exc:
                if _code(exc) in _MISSING:
                    return True
                raise self._error(f"head {source_key}", exc) from None
            if head.get("ETag") != etag:
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)

    def _claimed_by(self, key: str, marker: str) -> bool:
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if _code(exc) in _MISSING:
                return False  # deleted since: the next attempt at this name may succeed
            raise self._error(f"head {key}", exc) from None
        return head.get("Metadata", {}).get(_CLAIM_META) == marker
