"""Helpers that tests import (fixtures live in ``conftest.py``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import trustme


@dataclass(frozen=True)
class Pki:
    """A private CA and a server certificate, as PEM files."""

    ca: trustme.CA
    ca_file: str
    cert_file: str
    key_file: str


def issue(tmp_path: Path, *hosts: str) -> Pki:
    """A new CA in ``tmp_path`` and a server certificate from it for ``hosts``."""
    ca = trustme.CA()
    server = ca.issue_cert(*hosts)
    ca_file, cert_file, key_file = (tmp_path / n for n in ("ca.pem", "c.pem", "k.pem"))
    ca.cert_pem.write_to_path(str(ca_file))
    for blob in server.cert_chain_pems:
        blob.write_to_path(str(cert_file), append=True)
    server.private_key_pem.write_to_path(str(key_file))
    return Pki(ca, str(ca_file), str(cert_file), str(key_file))


def records(path: Path) -> list[dict[str, Any]]:
    """The records of a result log, in order."""
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line]
