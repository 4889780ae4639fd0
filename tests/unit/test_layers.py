"""Declaring job types is apart from binding their dependencies: the API and
producers load every job type without importing a vendor SDK or building a
provider."""

from __future__ import annotations

import subprocess
import sys

VENDOR_MODULES = ("stripe", "aiosmtplib", "standardwebhooks", "httpx_secure", "jinja2")


def test_the_api_and_the_registry_load_without_any_vendor_sdk() -> None:
    code = (
        "import sys\n"
        "from queue_service.api.app import create_app\n"
        "from queue_service.processors.registry import load_registry\n"
        "from queue_service.runtime.producer import SyncProducer\n"
        "registry = load_registry()\n"
        "assert registry.job_types, 'no job types loaded'\n"
        f"print(sorted(m for m in {VENDOR_MODULES!r} if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
