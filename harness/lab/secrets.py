"""Secrets never live in lab files: find anything that looks like one, and say where, never what.

Inventory and profiles are committed and shared, and hilbench echoes their contents in error
messages and reports. SSH authenticates with key files or the SSH agent; a key's passphrase stays in
an environment variable whose *name* the inventory gives (`key_passphrase_env`).
"""

from __future__ import annotations

import re

from harness.lab.yaml_load import YamlDoc

SECRET_WORDS = (
    "password",
    "passwd",
    "passphrase",
    "secret",
    "token",
    "api_key",
    "apikey",
    "private_key",
    "access_key",
    "credential",
)
SECRET_NAMES = {"pass", "pwd"}
# keys that *name* where a secret is kept, not the secret itself: key_passphrase_env, key_file, ...
REFERENCE_SUFFIXES = ("_env", "_file", "_path", "_var")
USER_KEYS = {"user", "username"}  # a user name never holds a ':' (`user: "pi:hunter2"`)
# user:password@host, with or without a scheme (ssh://, https://): the password sits between ':' and '@'
_USERINFO = re.compile(r"(?:^|://|\s)[^\s:/@]+:[^\s/@]+@[^\s/@]+")

SECRETS_HINT = (
    "secrets must not live in inventory or profile files: SSH uses key_file or the SSH agent, "
    "a key's passphrase stays in an environment variable named by key_passphrase_env"
)


def is_secret_key(name: str) -> bool:
    n = name.strip().lower().replace("-", "_")
    if n.endswith(REFERENCE_SUFFIXES):
        return False
    return n in SECRET_NAMES or any(word in n for word in SECRET_WORDS)


def has_userinfo_password(text: str) -> bool:
    return bool(_USERINFO.search(text))


def secrets_in(doc: YamlDoc) -> list[tuple[int, str, str]]:
    """(line, path, problem) for every secret-looking key or value, in file order; never the value."""
    found = [(k.line, k.path, SECRETS_HINT) for k in doc.keys if is_secret_key(k.text)]
    found += [
        (s.line, s.path, f"looks like user:password@host; {SECRETS_HINT}")
        for s in doc.strings
        if has_userinfo_password(s.text)
    ]
    found += [
        (s.line, s.path, f"looks like user:password; {SECRETS_HINT}")
        for s in doc.strings
        if s.path.rsplit(".", 1)[-1] in USER_KEYS and ":" in s.text and not has_userinfo_password(s.text)
    ]
    return sorted(found)
