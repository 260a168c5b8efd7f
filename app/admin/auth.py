"""Admin authentication: argon2 password hashes, a signed session cookie and CSRF tokens."""

from __future__ import annotations

import hmac
import re
import secrets
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from fastapi import Depends, Request
from fastapi.responses import Response
from itsdangerous import BadData, URLSafeTimedSerializer
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app.admin.hashing import HashingPool
from app.admin.hashing import pool as hashing_pool
from app.errors import BadRequest, Conflict, DomainError
from app.models import AdminUser
from app.models.base import utcnow
from app.web import get_session

COOKIE = "lpstudy_admin"
_hasher = PasswordHasher()
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$|^[^@\s]+@localhost$")
# Verifying against a dummy hash when the email is unknown keeps the timing the same.
_DUMMY_HASH = _hasher.hash("not-a-real-password")


class NotLoggedIn(Exception):
    """Raised by the admin dependency; the app turns it into a redirect to the login page (or 403)."""


class CsrfFailed(DomainError):
    status_code = 403
    title = "Form expired"


@dataclass
class AdminSession:
    csrf: str
    user_id: int | None = None
    email: str | None = None
    version: int = 0


def create_user(session: Session, email: str, password: str) -> AdminUser:
    email = email.strip().lower()
    if not EMAIL_RE.match(email):
        raise BadRequest(f"'{email}' is not a valid email address")
    if len(password) < 10:
        raise BadRequest("the password must be at least 10 characters long")
    if session.scalar(select(AdminUser.id).where(AdminUser.email == email)) is not None:
        raise Conflict(f"an admin user '{email}' already exists")
    user = AdminUser(email=email, password_hash=_hasher.hash(password))
    session.add(user)
    session.flush()
    return user


def list_users(session: Session) -> list[AdminUser]:
    return list(session.scalars(select(AdminUser).order_by(AdminUser.id)))


def set_password(session: Session, user: AdminUser, password: str) -> None:
    if len(password) < 10:
        raise BadRequest("the password must be at least 10 characters long")
    user.password_hash = _hasher.hash(password)
    session.flush()


def authenticate(
    session: Session, email: str, password: str, *, hashing: HashingPool | None = None
) -> AdminUser | None:
    """The user if the password is right. The check runs on the process's hashing thread (see hashing.py)."""
    user = session.scalar(select(AdminUser).where(AdminUser.email == email.strip().lower()))
    stored = user.password_hash if user else _DUMMY_HASH

    def verify() -> bool:
        try:
            return bool(_hasher.verify(stored, password))
        except (VerificationError, InvalidHashError):
            return False

    if not (hashing or hashing_pool()).run(verify) or user is None:
        return None
    user.last_login_at = utcnow()
    session.flush()
    return user


def _serializer(request: Request) -> URLSafeTimedSerializer:
    # URL-safe base64 + timestamp + signature: a cookie value of RFC 6265 cookie-octets only (no quotes,
    # commas, spaces or backslashes, which raw JSON would need).
    return URLSafeTimedSerializer(request.app.state.settings.secret_key, salt="lpstudy-admin-session")


def read_session(request: Request) -> AdminSession | None:
    raw = request.cookies.get(COOKIE)
    if not raw:
        return None
    try:
        data = _serializer(request).loads(raw, max_age=request.app.state.settings.session_max_age_s)
        return AdminSession(
            csrf=str(data["csrf"]), user_id=data.get("uid"), email=data.get("email"), version=int(data.get("sv", 0))
        )
    except (BadData, ValueError, KeyError, TypeError, AttributeError):
        return None


def write_session(request: Request, response: Response, sess: AdminSession) -> None:
    payload = {"csrf": sess.csrf, "uid": sess.user_id, "email": sess.email, "sv": sess.version}
    response.set_cookie(
        COOKIE,
        _serializer(request).dumps(payload),
        max_age=request.app.state.settings.session_max_age_s,
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
        path="/",
    )


def anonymous_session(request: Request) -> AdminSession:
    return read_session(request) or AdminSession(csrf=secrets.token_urlsafe(24))


def check_csrf(sess: AdminSession | None, token: str | None) -> None:
    # compared as UTF-8 bytes: compare_digest raises on non-ASCII str (a forged token is just a wrong one)
    if sess is None or not token or not hmac.compare_digest(sess.csrf.encode(), token.encode("utf-8", "replace")):
        raise CsrfFailed("This form has expired or was not sent from lpstudy. Reload the page and try again.")


def require_admin(request: Request, session: Session = Depends(get_session)) -> AdminSession:
    sess = read_session(request)
    if sess is None or sess.user_id is None:
        raise NotLoggedIn()
    version = session.scalar(select(AdminUser.session_version).where(AdminUser.id == sess.user_id))
    if version is None or version != sess.version:
        raise NotLoggedIn()  # logged out elsewhere, or the user is gone
    return sess


def end_sessions(session: Session, user_id: int) -> None:
    """Logout: every cookie issued to this user so far stops working."""
    session.execute(
        update(AdminUser).where(AdminUser.id == user_id).values(session_version=AdminUser.session_version + 1)
    )
