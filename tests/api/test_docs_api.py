"""/docs and /redoc work offline: their pages name no outside address, and
every asset they load is served by the service itself, byte for byte the
vendored file listed in api/static/VENDORED.md."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest

from tests.api.conftest import Api

STATIC = Path(__file__).resolve().parents[2] / "src/queue_service/api/static"
ASSET = re.compile(r"""(?:src|href|url)\s*[=:(]\s*['"]([^'"]+)['"]""")


def vendored_hashes() -> dict[str, str]:
    """file -> sha256 from VENDORED.md's table."""
    rows = re.findall(
        r"^\| `([^`]+)` \|[^|]+\| `([0-9a-f]{64})` \|$", (STATIC / "VENDORED.md").read_text(), re.M
    )
    return dict(rows)


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
async def test_a_docs_page_names_no_outside_address_and_its_assets_load(
    api: Api, page: str
) -> None:
    response = await api.client.get(page)
    assert response.status_code == 200
    html = response.text
    assert "http://" not in html and "https://" not in html and "//cdn" not in html

    assets = [a for a in ASSET.findall(html) if a != "/openapi.json"]
    assert assets, "the page loads its script from somewhere"
    for asset in assets:
        assert asset.startswith("/docs/assets/"), asset
        loaded = await api.client.get(asset)
        assert loaded.status_code == 200, asset
        name = asset.removeprefix("/docs/assets/")
        assert hashlib.sha256(loaded.content).hexdigest() == vendored_hashes()[name]
    assert (await api.client.get("/openapi.json")).status_code == 200


def test_every_vendored_file_matches_the_hash_recorded_for_it() -> None:
    hashes = vendored_hashes()
    on_disk = {p.name for p in STATIC.iterdir() if p.name != "VENDORED.md"}

    assert set(hashes) == on_disk
    for name, digest in hashes.items():
        assert hashlib.sha256((STATIC / name).read_bytes()).hexdigest() == digest, name


async def test_the_docs_pages_are_not_operations_of_the_api(api: Api) -> None:
    paths = (await api.client.get("/openapi.json")).json()["paths"]
    assert not [p for p in paths if p.startswith(("/docs", "/redoc"))]
