"""Who may sign in at the desk's screen: a TOML file of sign-in names, each mapped to one of
the desk's parties and the user id the services log (NEN 7513 responsible user), with a scrypt
password hash. The role is the party certificate's, never the file's: who asks still comes
from mTLS.

    [[user]]
    name = "anouk"                        # what she types at sign-in
    party = "zsm-midden-nederland-kpc"    # whose certificate her calls go with
    user_id = "kpc-0117"                  # on_behalf_of in every call
    password = "scrypt$16384$8$1$<salt>$<hash>"   # `baken desk hash-password`
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import tomllib
from dataclasses import dataclass
from pathlib import Path

# scrypt's cost: 16 MiB of memory and some 50 ms a sign-in; stored with each hash.
N, R, P = 2**14, 8, 1
_NAME = re.compile(r"[a-z][a-z0-9._-]{0,63}")
_USER_ID = re.compile(r"[a-z0-9][a-z0-9-]{0,63}")


class UsersError(Exception):
    """The users file cannot be used; the message says where and why."""


@dataclass(frozen=True, slots=True)
class User:
    name: str
    party: str
    user_id: str
    password_hash: str = ""

    def check(self, password: str) -> bool:
        return check_password(self.password_hash, password)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def hash_password(password: str, *, n: int = N, r: int = R, p: int = P) -> str:
    salt = secrets.token_bytes(16)
    key = hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, dklen=32)
    return f"scrypt${n}${r}${p}${_b64(salt)}${_b64(key)}"


def check_password(stored: str, password: str) -> bool:
    try:
        scheme, n, r, p, salt, key = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = _unb64(key)
        got = hashlib.scrypt(
            password.encode(),
            salt=_unb64(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            dklen=len(expected),
            maxmem=2**26,
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, expected)


# Checked against when the name is unknown, so that an unknown name takes as long as a wrong
# password and sign-in does not tell which names exist.
_DUMMY = hash_password(secrets.token_urlsafe(16))


def load_users(path: Path) -> dict[str, User]:
    try:
        data = tomllib.loads(path.read_text("utf-8"))
    except OSError as error:
        raise UsersError(f"{path}: cannot read ({error.strerror})") from None
    except tomllib.TOMLDecodeError as error:
        raise UsersError(f"{path}: {error}") from None
    users: dict[str, User] = {}
    for index, entry in enumerate(data.get("user", [])):
        where = f"{path}: user #{index + 1}"
        if not isinstance(entry, dict) or set(entry) != {"name", "party", "user_id", "password"}:
            raise UsersError(f"{where}: needs exactly name, party, user_id and password")
        name, party, user_id, password = (
            entry["name"],
            entry["party"],
            entry["user_id"],
            entry["password"],
        )
        if not all(isinstance(v, str) for v in (name, party, user_id, password)):
            raise UsersError(f"{where}: every value is a string")
        if not _NAME.fullmatch(name):
            raise UsersError(f"{where}: name {name!r}: lower-case letters, digits, . _ -")
        if not _USER_ID.fullmatch(user_id):
            raise UsersError(f"{where}: user_id {user_id!r}: lower-case letters, digits, -")
        if not password.startswith("scrypt$") or password.count("$") != 5:
            raise UsersError(f"{where}: password is not a scrypt hash (baken desk hash-password)")
        if name in users:
            raise UsersError(f"{where}: name {name!r} twice")
        users[name] = User(name, party, user_id, password)
    if not users:
        raise UsersError(f"{path}: no [[user]]")
    return users


def authenticate(users: dict[str, User], name: str, password: str) -> User | None:
    user = users.get(name.strip().lower())
    if user is None:
        check_password(_DUMMY, password)
        return None
    return user if user.check(password) else None


def users_toml(entries: list[tuple[str, str, str, str]]) -> str:
    """A users file for (name, party, user_id, password) in clear: the demo's."""
    lines = []
    for name, party, user_id, password in entries:
        lines += [
            "[[user]]",
            f'name = "{name}"',
            f'party = "{party}"',
            f'user_id = "{user_id}"',
            f'password = "{hash_password(password)}"',
            "",
        ]
    return "\n".join(lines)
