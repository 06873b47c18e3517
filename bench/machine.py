"""What every benchmark records beside its numbers: the machine, its load, the versions and the commit.

Shared by the bench scripts (run as ``python bench/<name>.py``, so this folder is on ``sys.path``), so
each result file describes its run the same way and the load average is never forgotten.
"""

from __future__ import annotations

import importlib.metadata as md
import os
import platform
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def machine_info(packages: Iterable[str]) -> dict[str, Any]:
    """Python, cores, load average, platform, the named packages' versions, the git commit and the UTC time."""
    return {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "load_avg": os.getloadavg(),
        "platform": platform.platform(),
        "versions": {p: md.version(p) for p in packages},
        "commit": subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
