"""A user's Unix password, checked by PAM (for the web interface's sign-in, where ``[web] pam_service``
allows it). Blocking (a failed check may wait seconds, by the PAM stack's design): run it in a thread."""

from __future__ import annotations


def password_ok(service: str, user: str, password: str) -> bool:
    """Whether ``password`` is ``user``'s, as the PAM ``service`` decides (its auth and account steps)."""
    import pam  # python-pam: ctypes over libpam, loaded only where passwords are taken

    return bool(pam.pam().authenticate(user, password, service=service, resetcreds=False))
