"""Who is asking and what they may do: the signed-in user and permission dependencies."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import HTTPException, Request
from starlette.concurrency import run_in_threadpool

from adapters.request_context import bind_actor
from adapters.web.auth import PERMISSION_WORDS, User
from adapters.web.config import WebConfig


class Forbidden(HTTPException):
    """A refused action, answered with a plain sentence."""

    def __init__(self, sentence: str) -> None:
        super().__init__(status_code=403, detail=sentence)


class LoginRequired(Exception):
    """No signed-in user on a page that needs one."""


class Access:
    """The signed-in user of a request and the permission checks routes depend on."""

    def __init__(self, cfg: WebConfig) -> None:
        self.cfg = cfg

    def current_user(self, request: Request) -> User | None:
        """The local operator, or the user named in the session (None when nobody signed in)."""
        if self.cfg.local_user is not None:
            return self.cfg.local_user
        assert self.cfg.users is not None
        session = request.state.session
        name = session.get("user")
        if not isinstance(name, str):
            return None
        holder = self.cfg.sessions.holder(session.get("sid"))
        if holder is None or holder[0] != name:
            return None  # signed out (or this server restarted): the cookie alone is not enough
        user = self.cfg.users.get(name)
        if user is None or self.cfg.users.digest_of(name) != holder[1]:
            self.cfg.sessions.end(session.get("sid"))  # removed, or the token was changed
            return None
        return user

    def signed_in(self, request: Request) -> User:
        """The current user, or LoginRequired."""
        user = self.current_user(request)
        if user is None:
            raise LoginRequired()
        return user

    def requires(self, permission: str) -> Callable[[Request], Awaitable[User]]:
        """A route dependency: the signed-in user, refused with a sentence without `permission`;
        the user's school and name join the request's log context."""

        async def dependency(request: Request) -> User:
            # async so the binding lands in the request's context, which the route's thread
            # copies (a sync dependency would bind in a throwaway copy of its own)
            user = await run_in_threadpool(self.signed_in, request)
            bind_actor(user.school, user.name)
            if not user.can(permission):
                raise Forbidden(
                    f"You ({user.name}) may not {PERMISSION_WORDS[permission]}: "
                    f"this needs the {permission} permission."
                )
            return user

        return dependency
