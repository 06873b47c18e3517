"""No credential literal in the repository (issue 21, acceptance): every key, password and token is
generated (``config/credentials.py``, ``config/identities.py``, test fixtures with ``secrets``) or comes
from the environment or a Connection.

What counts as a credential literal: a string assigned to a credential-named key (``password=``,
``"secret_key": ``, ``AWS_SECRET_ACCESS_KEY=`` ...), an AWS access key id, a private key block, or a
default recflow once shipped (the old S3 secret, ``recflow`` + ``-secret``). What does not:
``change-me`` placeholders (refused at start, ``refuse_placeholders``), ``<secret>``-style
placeholders in docs, and values built from variables (``${...}``, f-strings, names).
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_WORDS = (
    "password|passwd|secret|secret_key|secret_access_key|access_key|access_key_id|token|api_key|jwt_secret|"
    "fernet_key|credential"
)
#: ``key = "value"``, ``"key": "value"``, ``key="value"`` for a credential-named key (any case, any prefix).
_ASSIGNED = re.compile(rf"""(?i)[\w.]*(?:{_WORDS})["']?\s*[:=]\s*(?P<q>["'])(?P<value>[^"'\n]*)(?P=q)""")
#: ``NAME=value`` in env files, compose, shell and Makefiles.
_ENV = re.compile(rf"""^\s*(?:export\s+)?[A-Z_]*(?:{_WORDS.upper()})=(?P<value>[^\s#]+)""", re.MULTILINE)
#: ``password: value`` (unquoted) in YAML: compose files, Helm values.
_YAML = re.compile(rf"""(?im)^\s*[\w.-]*(?:{_WORDS}):[ \t]+(?P<value>[^\s#'"][^\s#]*)""")
#: ``setenv(<a credential variable's name>, "<a literal>")``.
_PAIR = re.compile(rf"""["'][A-Z_]*(?:{_WORDS.upper()})["'][ \t]*,[ \t]*(?P<q>["'])(?P<value>[^"'\n]*)(?P=q)""")
_ALWAYS = [re.compile(r"AKIA[0-9A-Z]{16}"), re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
           re.compile("recflow" + "-secret")]  # fmt: skip
_SKIP_FILES = {"uv.lock"}


def _harmless(value: str) -> bool:
    """Placeholders and values built from something else."""
    v = value.strip()
    return (
        len(v) < 3
        or "change-me" in v.lower()
        or v.startswith(("$", "<", "{", "%", "*"))
        or "{" in v
        or v.lower() in {"none", "null", "true", "false", "redacted", "***"}
        or re.fullmatch(r"[A-Z][A-Z0-9_]+", v) is not None  # the name of a variable, not a value
    )


def credential_literals(text: str, *, yaml: bool = False) -> list[str]:
    """The suspicious snippets of ``text`` (empty when it holds no credential literal); ``yaml``: a YAML file."""
    found = [m.group(0) for m in _ASSIGNED.finditer(text) if not _harmless(m.group("value"))]
    found += [m.group(0) for m in _ENV.finditer(text) if not _harmless(m.group("value"))]
    found += [m.group(0) for m in _PAIR.finditer(text) if not _harmless(m.group("value"))]
    if yaml:
        found += [m.group(0) for m in _YAML.finditer(text) if not _harmless(m.group("value"))]
    found += [m.group(0) for pattern in _ALWAYS for m in pattern.finditer(text)]
    return found


def _tracked_files() -> list[Path]:
    try:
        out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True, timeout=60)
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"not a git checkout ({exc}): the scan reads the tracked files")
    return [ROOT / name for name in out.stdout.decode().split("\0") if name and Path(name).name not in _SKIP_FILES]


def test_the_scanner_finds_what_it_must_and_passes_placeholders() -> None:
    key = "AWS_SECRET_" + "ACCESS_KEY"
    pw = "pass" + "word"
    literal = "hunter2-" + "x" * 6
    aws_id, old_default = "AKIA" + "ABCDEFGHIJKLMNOP", "recflow" + "-secret"
    for line in (f'{pw} = "{literal}"', f'"{key.lower()}": "{literal}"', f"{key}={literal}",
                 f'sasl.{pw}="{literal}"', f'setenv("{key}", "{literal}")', aws_id, old_default):  # fmt: skip
        assert credential_literals(line), line
    assert credential_literals(f"  {pw}: {literal}\n", yaml=True)
    assert not credential_literals(f"  {key}: ${{{key}:?set it}}\n", yaml=True)
    for line in (f"{key}=change-me-secret-key", f"{key}=${{{key}:?set it}}", f'"{pw}": "<secret>"',
                 f"{pw}={pw}", f'{pw}=f"{{generated}}"', f'{pw}=""', f'("{key}", "AWS_ACCESS_KEY_ID")'):  # fmt: skip
        assert not credential_literals(line), line


def test_no_tracked_file_holds_a_credential_literal() -> None:
    offenders = []
    for path in _tracked_files():
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, FileNotFoundError, IsADirectoryError):
            continue  # binary files and files deleted in the working tree
        offenders += [
            f"{path.relative_to(ROOT)}: {hit}"
            for hit in credential_literals(text, yaml=path.suffix in {".yml", ".yaml"})
        ]
    assert not offenders, "credential literals (generate them, or read the environment):\n" + "\n".join(offenders)
