"""QuickBooks connection routes: connect, the OAuth callback, test and disconnect."""

from __future__ import annotations

import structlog
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from adapters.authorization_url import (
    NO_URL_MESSAGE,
    UNTRUSTED_URL_MESSAGE,
    is_trusted_authorization_url,
    refusal_for,
)
from adapters.redaction import redact_text
from adapters.web.access import Access
from adapters.web.auth import ADMIN, VIEW, User
from adapters.web.card import card_status, mark_verifying
from adapters.web.config import WebConfig
from adapters.web.connection import (
    ConnectionServicePort,
    check_sentence,
    confirm_switch,
    in_browser_words,
    switch_page_context,
    take_switch,
)
from adapters.web.pages import Pages
from adapters.web.session import flash, form
from domain.connection import CompanySwitchRefused
from domain.ports import ConnectionCheck
from services.connection import check_document

log = structlog.get_logger(__name__)


def register(app: FastAPI, cfg: WebConfig, access: Access, pages: Pages) -> None:
    """Add POST /connect, GET /callback (and /qbo/callback), POST /connection/test, /disconnect."""

    def service() -> ConnectionServicePort:
        if cfg.connections is None:
            raise HTTPException(503, cfg.connections_unavailable)
        return cfg.connections

    @app.post("/connect", response_class=HTMLResponse)
    def connect(
        request: Request,
        fields: dict[str, str] = Depends(form),
        user: User = Depends(access.requires(ADMIN)),
    ) -> Response:
        return start(request, user)

    @app.post("/connect/switch-company", response_class=HTMLResponse)
    def connect_switching_company(
        request: Request,
        fields: dict[str, str] = Depends(form),
        user: User = Depends(access.requires(ADMIN)),
    ) -> Response:
        """The admin confirmed moving the school to another company: authorize it again."""
        realm = fields.get("realm", "").strip()
        if not realm:
            raise HTTPException(400, "No QuickBooks company to switch to")
        confirm_switch(request, realm, fields.get("company", "")[:200])
        log.info("web_company_switch_confirmed", school=user.school, operator=user.name)
        return start(request, user)

    def refused(
        request: Request, text: str, title: str = "Cannot connect to QuickBooks", code: int = 502
    ) -> Response:
        """Connecting failed: say why and offer to retry (article 000)."""
        return pages.render(
            request,
            "connect_refused.html",
            {
                "title": title,
                "text": text,
                "no_url": text in (NO_URL_MESSAGE, UNTRUSTED_URL_MESSAGE),
            },
            status_code=code,
        )

    def start(request: Request, user: User) -> Response:
        try:
            url, _state = service().connect(user.school)
        except HTTPException:
            raise
        except Exception as exc:  # the service states its own reason (e.g. refused URL)
            log.warning("web_connect_failed", school=user.school, error=type(exc).__name__)
            return refused(request, redact_text(str(exc)) or refusal_for(None))
        if not is_trusted_authorization_url(url, cfg.authorization_origins):
            log.warning("web_authorization_url_refused", school=user.school, empty=not url)
            return refused(request, refusal_for(url))
        log.info("web_connect_started", school=user.school, operator=user.name)
        return RedirectResponse(url, 303)

    @app.get("/callback", response_class=HTMLResponse)
    @app.get("/qbo/callback", response_class=HTMLResponse)  # the default redirect URI's path
    def callback(request: Request, user: User = Depends(access.requires(ADMIN))) -> Response:
        error = request.query_params.get("error")
        if error:
            return pages.message_page(
                request,
                "QuickBooks did not connect",
                f"QuickBooks said: {error}"
                + (
                    f" ({request.query_params['error_description']})"
                    if request.query_params.get("error_description")
                    else ""
                ),
                status_code=400,
                tone="bad",
            )
        switching = take_switch(request, request.query_params.get("realmId", ""))
        try:
            check = service().callback(
                user.school, str(request.url), user.name, switch_company=switching is not None
            )
        except HTTPException:
            raise
        except CompanySwitchRefused as exc:  # another company: an admin confirms it here
            return pages.render(
                request, "switch_company.html", switch_page_context(exc.switch), status_code=409
            )
        except Exception as exc:
            log.warning("web_callback_failed", school=user.school, error=type(exc).__name__)
            return refused(
                request, in_browser_words(redact_text(str(exc))), "QuickBooks did not connect", 400
            )
        if not check.ok:
            return pages.message_page(
                request, "QuickBooks did not connect", check_sentence(check), tone="bad"
            )
        log.info("web_connect_completed", school=user.school, operator=user.name)
        if switching is not None:
            flash(
                request,
                "ok",
                f"This school now invoices in {switching.get('company') or 'the new company'}. "
                "Records that may already be in the old company wait under Action Required: "
                "check them there, then Dismiss them or press Retry Failed.",
            )
        mark_verifying(request)  # the card itself says "QuickBooks connected! Verifying..."
        return RedirectResponse("/settings", 303)  # article 000: back to Invoicing Settings

    @app.post("/connection/test")
    def test_connection(
        request: Request,
        fields: dict[str, str] = Depends(form),
        user: User = Depends(access.requires(VIEW)),
    ) -> Response:
        try:
            check = service().test(user.school, user.name)
        except HTTPException:
            raise
        except Exception as exc:
            check = ConnectionCheck(ok=False, message=redact_text(str(exc)))
        sentence = check_sentence(check)
        if "application/json" in request.headers.get("accept", ""):
            shown = {**check_document(check), "message": sentence}
            return JSONResponse({**shown, "status": card_status(cfg, user.school)})
        flash(request, "ok" if check.ok else "bad", sentence)
        return RedirectResponse("/", 303)

    @app.post("/disconnect")
    def disconnect(
        request: Request,
        fields: dict[str, str] = Depends(form),
        user: User = Depends(access.requires(ADMIN)),
    ) -> Response:
        try:
            service().disconnect(user.school, user.name)
        except HTTPException:
            raise
        except Exception as exc:
            flash(request, "bad", f"Not disconnected: {redact_text(str(exc))}")
            return RedirectResponse("/", 303)
        log.info("web_disconnected", school=user.school, operator=user.name)
        flash(request, "ok", "QuickBooks disconnected: tokens revoked and forgotten.")
        return RedirectResponse("/", 303)
