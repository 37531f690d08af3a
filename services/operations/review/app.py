"""The console's web application (Starlette): pages, the live stream, images and decisions.

Every route goes through ``_session`` (no page, stream or image without one), every
state-changing route through ``_csrf``, and every alert through ``access`` with the session's
user: the server decides, whatever the page shows.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import secrets
import time
from collections.abc import Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from authlib.common.errors import AuthlibBaseError
from joserfc.errors import JoseError
from sse_starlette.sse import EventSourceResponse
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from services.common.settings import ReviewSettings
from services.governance.forces.place import force_of_topic, stamp

from . import metrics
from .access import may_adjudicate, may_read_national, may_read_reports, may_see_deployment, same_force
from .board import Board
from .custody import EvidenceCustody
from .feeds import Sweeper, Writer
from .oidc import oauth_client, user_from_claims
from .addresses import client_address, parse_proxies
from .sessions import LoginLimiter, Session, SessionStore
from .users import User, UsersFile

logger = logging.getLogger(__name__)
HERE = Path(__file__).resolve().parent
COOKIE = "lfr_session"
LOGIN_COOKIE = "lfr_login_csrf"
DECISIONS = ("confirmed", "rejected", "unable_to_verify")
OUTCOMES = ("not_stopped", "spoken_to", "arrested", "other")
NO_STORE = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}


@dataclass
class Console:
    """Everything the routes need; built by ``service.py`` (or a test) around real parts."""

    settings: ReviewSettings
    board: Board
    custody: EvidenceCustody
    writer: Writer
    sweeper: Sweeper
    users: UsersFile
    sessions: SessionStore
    limiter: LoginLimiter
    clock: Callable[[], int] = lambda: int(time.time() * 1000)
    report: Callable[[], dict] | None = None  # transparency report figures, for report readers
    fleet: Any = None  # services/van/fleet/fleetview.py FleetView: the vans' latest heartbeats, for the fleet page
    national: Callable[[], dict] | None = None  # counts by force (services/operations/report/national.py), for the national role


def build_app(console: Console) -> Starlette:
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    oidc = oauth_client(console.settings)
    secure = console.settings.cookie_secure
    proxies = parse_proxies(console.settings.trusted_proxies)  # validated by the settings class

    def _set_session_cookie(response: Response, session: Session) -> None:
        response.set_cookie(COOKIE, session.token, httponly=True, secure=secure, samesite="strict", path="/",
                            max_age=int(console.settings.session_ttl_s))

    def _session(request: Request, *, page: bool = False) -> Session:
        session = console.sessions.get(request.cookies.get(COOKIE))
        metrics.SESSIONS.set(len(console.sessions))
        if session is None:
            metrics.REFUSALS.labels("no_session").inc()
            if page:
                raise HTTPException(303, headers={"Location": "/login"})
            raise HTTPException(401, "sign in first")
        return session

    def _csrf(request: Request, session: Session) -> None:
        sent = request.headers.get("x-csrf-token", "")
        if not sent or not hmac.compare_digest(sent, session.csrf):
            metrics.REFUSALS.labels("csrf").inc()
            raise HTTPException(403, "missing or wrong CSRF token")

    def _forbidden(reason: str = "not allowed for your role or deployment") -> HTTPException:
        metrics.REFUSALS.labels("forbidden").inc()
        return HTTPException(403, reason)

    def _alert_for(session: Session, alert_id: str):
        view = console.board.get(alert_id)
        if view is None or not same_force(session.user, view.data):  # another force's alert does not exist here
            if view is not None:
                metrics.REFUSALS.labels("other_force").inc()
            raise HTTPException(404, "no such alert")
        if not may_see_deployment(session.user, view.deployment_id):
            raise _forbidden()
        return view

    # -- sign-in -------------------------------------------------------------------------------
    def _login_form(request: Request, error: str | None, status_code: int = 200) -> Response:
        token = secrets.token_urlsafe(24)
        response = templates.TemplateResponse(request, "login.html", {"csrf": token, "error": error, "oidc": oidc is not None},
                                              status_code=status_code, headers=NO_STORE)
        response.set_cookie(LOGIN_COOKIE, token, httponly=True, secure=secure, samesite="strict", path="/login", max_age=900)
        return response

    async def login_page(request: Request) -> Response:
        return _login_form(request, request.query_params.get("error"))

    async def login(request: Request) -> Response:
        if oidc is not None:  # the identity provider decides who signs in; a leftover users file must not
            metrics.LOGINS.labels("local_disabled").inc()
            raise HTTPException(404, "sign in with your force account (OpenID Connect)")
        form = await request.form()
        sent, expected = str(form.get("csrf", "")), request.cookies.get(LOGIN_COOKIE, "")
        if not sent or not expected or not hmac.compare_digest(sent, expected):
            metrics.REFUSALS.labels("csrf").inc()
            raise HTTPException(403, "missing or wrong CSRF token")
        username, password = str(form.get("username", ""))[:64], str(form.get("password", ""))[:256]
        address = client_address(request.client.host if request.client else None, request.headers.get("x-forwarded-for"), proxies)
        keys = (f"user:{username}",) + ((f"ip:{address}",) if address else ())  # per account always; per address if trustworthy
        if console.limiter.locked(*keys):
            metrics.LOGINS.labels("locked").inc()
            return templates.TemplateResponse(request, "login.html", {"csrf": sent, "error": "Too many attempts: try again later.",
                                                                       "oidc": oidc is not None}, status_code=429, headers=NO_STORE)
        user = await run_in_threadpool(console.users.verify, username, password)  # argon2: keep it off the event loop
        if user is None:
            console.limiter.failed(*keys)
            metrics.LOGINS.labels("wrong").inc()
            return templates.TemplateResponse(request, "login.html", {"csrf": sent, "error": "Wrong user name or password.",
                                                                       "oidc": oidc is not None}, status_code=401, headers=NO_STORE)
        console.limiter.succeeded(*keys)
        metrics.LOGINS.labels("ok").inc()
        return await _signed_in(user, "local")

    async def _signed_in(user: User, method: str) -> Response:
        if user.role != "national" and user.force != console.settings.force:
            # This console serves one force (LFR_FORCE): an officer of another signs in to their own.
            metrics.LOGINS.labels("other_force").inc()
            raise HTTPException(403, f"this console serves force {console.settings.force}; sign in to your force's console")
        session = console.sessions.create(user)
        await run_in_threadpool(console.writer.audit, user.username, "review.sign_in", None,
                                {"role": user.role, "method": method, "user_force": user.force})
        if method == "oidc":
            # The callback is reached by a redirect from the provider's site, and a browser sends no
            # SameSite=Strict cookie along a redirect chain another site started: a 303 to "/" would
            # land on the login page. This page moves on to "/" itself, a same-site navigation.
            response: Response = Response('<!doctype html><meta http-equiv="refresh" content="0;url=/"><title>Signed in</title>'
                                          '<p><a href="/">Continue to the console</a></p>', media_type="text/html", headers=NO_STORE)
        else:
            response = RedirectResponse("/", status_code=303)
        _set_session_cookie(response, session)
        response.delete_cookie(LOGIN_COOKIE, path="/login")
        return response

    async def logout(request: Request) -> Response:
        session = _session(request)
        _csrf(request, session)
        console.sessions.end(session.token)
        response = JSONResponse({"signed_out": True})
        response.delete_cookie(COOKIE, path="/")
        return response

    async def oidc_login(request: Request) -> Response:
        if oidc is None:
            raise HTTPException(404, "OpenID Connect is not configured")
        return await oidc.authorize_redirect(request, console.settings.public_url.rstrip("/") + "/auth/oidc/callback")

    async def oidc_callback(request: Request) -> Response:
        if oidc is None:
            raise HTTPException(404, "OpenID Connect is not configured")
        try:
            # Authlib verifies the ID token here: signature against the JWKS, issuer, audience, expiry, nonce.
            token = await oidc.authorize_access_token(request)
        except (AuthlibBaseError, JoseError, ValueError) as exc:
            metrics.LOGINS.labels("oidc_refused").inc()
            logger.warning("OpenID Connect sign-in refused", extra={"reason": type(exc).__name__, "detail": str(exc)[:200]})
            return _login_form(request, "Sign-in refused: the identity provider's answer did not verify.", 401)
        except httpx.HTTPError as exc:
            metrics.LOGINS.labels("oidc_unavailable").inc()
            logger.warning("OpenID Connect provider unreachable", extra={"reason": type(exc).__name__})
            return _login_form(request, "The identity provider cannot be reached: try again later.", 502)
        user = user_from_claims(token.get("userinfo") or {}, console.settings.oidc_roles_claim, console.settings.oidc_deployments_claim,
                                console.settings.oidc_force_claim)
        if user is None:
            metrics.LOGINS.labels("oidc_refused").inc()
            return RedirectResponse("/login?error=no+role+for+this+console", status_code=303)
        metrics.LOGINS.labels("oidc_ok").inc()
        return await _signed_in(user, "oidc")

    # -- pages ---------------------------------------------------------------------------------
    async def console_page(request: Request) -> Response:
        session = _session(request, page=True)
        if session.user.role == "auditor":
            return RedirectResponse("/report", status_code=303)
        if session.user.role == "national":
            return RedirectResponse("/api/national", status_code=303)
        return templates.TemplateResponse(request, "console.html", {"user": session.user, "csrf": session.csrf}, headers=NO_STORE)

    async def report_page(request: Request) -> Response:
        session = _session(request, page=True)
        if not may_read_reports(session.user):
            raise _forbidden()
        if console.report is None:
            raise HTTPException(404, "no report source configured")
        from services.operations.report.render import render_html

        report = await run_in_threadpool(console.report)
        return Response(render_html(report), media_type="text/html", headers=NO_STORE)

    def _fleet(request: Request, page: bool) -> list[dict]:
        session = _session(request, page=page)
        if not may_read_reports(session.user):  # force-wide, like the report: supervisors, auditors
            raise _forbidden()
        from services.van.fleet.page import fleet_rows

        vans = console.fleet.vans(console.settings.force) if console.fleet is not None else []  # this force's vans only
        return fleet_rows(vans, console.clock())

    async def fleet_page(request: Request) -> Response:
        from services.van.fleet.page import render_fleet_html

        rows = _fleet(request, page=True)
        return Response(render_fleet_html(rows, console.settings.force, console.clock()), media_type="text/html", headers=NO_STORE)

    async def fleet_api(request: Request) -> Response:
        return JSONResponse({"force": console.settings.force, "vans": _fleet(request, page=False), "now_ms": console.clock()},
                            headers=NO_STORE)

    async def national(request: Request) -> Response:
        """Counts by force and totals (the keys of `lfr report --national --json`): nothing finer."""
        session = _session(request)
        if not may_read_national(session.user):
            raise _forbidden()
        if console.national is None:
            raise HTTPException(404, "no national source configured")
        report = await run_in_threadpool(console.national)
        return JSONResponse({"forces": report["forces"], "totals": report["totals"]}, headers=NO_STORE)

    # -- API -------------------------------------------------------------------------------------
    async def alerts(request: Request) -> Response:
        session = _session(request)
        if session.user.role in ("auditor", "national"):
            raise _forbidden()
        return JSONResponse({"alerts": console.board.visible(session.user), "now_ms": console.clock()}, headers=NO_STORE)

    async def stream(request: Request) -> Response:
        session = _session(request)
        if session.user.role in ("auditor", "national"):
            raise _forbidden()
        listener = console.board.subscribe(session.user)

        async def events():
            metrics.LIVE_STREAMS.inc()
            try:
                yield {"event": "hello", "data": json.dumps({"now_ms": console.clock()})}
                while True:
                    try:
                        event = await asyncio.wait_for(listener.queue.get(), timeout=10)
                    except TimeoutError:
                        if console.sessions.get(session.token) is None:
                            return  # signed out or expired: the stream ends with the session
                        continue
                    yield {"event": event["type"], "data": json.dumps(event)}
            finally:
                console.board.unsubscribe(listener)
                metrics.LIVE_STREAMS.dec()

        return EventSourceResponse(events(), ping=15, headers=NO_STORE)

    async def probe_image(request: Request) -> Response:
        session = _session(request)
        view = _alert_for(session, request.path_params["alert_id"])
        held = await run_in_threadpool(console.custody.image, view.alert_id)
        if held is None:
            raise HTTPException(404, "no evidence held for this alert (erased, expired or not received)")
        return Response(held[0], media_type=held[1], headers=NO_STORE)

    async def reference_image(request: Request) -> Response:
        session = _session(request)
        view = _alert_for(session, request.path_params["alert_id"])
        image = console.board.references.get(view.data["subject_id"])
        if image is None:
            raise HTTPException(404, "no reference image for this subject")
        return Response(image, media_type="image/jpeg", headers=NO_STORE)

    async def _json_body(request: Request) -> dict[str, Any]:
        try:
            body = json.loads(await request.body() or b"{}")
        except ValueError:
            body = None
        if not isinstance(body, dict):
            metrics.REFUSALS.labels("invalid").inc()
            raise HTTPException(400, "JSON object expected")
        return body

    async def decide(request: Request) -> Response:
        session = _session(request)
        _csrf(request, session)
        view = _alert_for(session, request.path_params["alert_id"])
        if not may_adjudicate(session.user, view.deployment_id):
            raise _forbidden()
        body = await _json_body(request)
        decision = body.get("decision")
        if decision not in DECISIONS:
            raise HTTPException(400, f"decision must be one of {', '.join(DECISIONS)}")
        if console.board.decision_of(view.alert_id) is not None:
            raise HTTPException(409, "this alert has already been decided")
        now = console.clock()
        record = _record(view, session.user, "decision", decision, now)
        await run_in_threadpool(_write_adjudication, record)
        if decision == "rejected":
            # Erase now; the sweeper re-checks every few seconds in case evidence arrives later.
            await run_in_threadpool(console.sweeper.erase, view.alert_id, "rejected")
        metrics.ALERT_TO_DECISION.observe(record["alert_to_decision_ms"] / 1000)
        return JSONResponse({"adjudication": record}, headers=NO_STORE)

    async def outcome(request: Request) -> Response:
        session = _session(request)
        _csrf(request, session)
        view = _alert_for(session, request.path_params["alert_id"])
        if not may_adjudicate(session.user, view.deployment_id):
            raise _forbidden()
        body = await _json_body(request)
        value, reason = body.get("outcome"), str(body.get("reason") or "").strip()
        if value not in OUTCOMES:
            raise HTTPException(400, f"outcome must be one of {', '.join(OUTCOMES)}")
        if value == "other" and not reason:
            raise HTTPException(400, "a short reason is required for outcome other")
        if len(reason) > 200:
            raise HTTPException(400, "reason: at most 200 characters")
        previous = console.board.adjudications.get(view.alert_id)
        if previous is None or previous["decision"] == "rejected":
            raise HTTPException(409, "an outcome follows a confirmed or unverified decision")
        if previous.get("outcome"):
            raise HTTPException(409, "this alert's outcome is already recorded")
        record = _record(view, session.user, "outcome", previous["decision"], console.clock())
        record["alert_to_decision_ms"] = previous["alert_to_decision_ms"]
        record["outcome"] = value
        if reason:
            record["outcome_reason"] = reason
        await run_in_threadpool(_write_adjudication, record)
        return JSONResponse({"adjudication": record}, headers=NO_STORE)

    def _record(view, user: User, stage: str, decision: str, now: int) -> dict[str, Any]:
        return stamp({
            "alert_id": view.alert_id, "subject_id": view.data["subject_id"], "deployment_id": view.deployment_id,
            "camera_id": view.data["camera_id"], "stage": stage, "decision": decision, "actor": user.username, "role": user.role,
            "alert_at_ms": view.alert_at_ms, "decided_at_ms": now, "alert_to_decision_ms": max(0, now - view.alert_at_ms),
        }, force_of_topic(console.settings.adjudications_topic))  # the decision carries its force (services/governance/forces)

    def _write_adjudication(record: dict[str, Any]) -> None:
        console.writer.adjudication(record)
        details = {k: record[k] for k in ("alert_id", "deployment_id", "stage", "decision", "role", "alert_to_decision_ms")}
        if record.get("outcome"):
            details["outcome"] = record["outcome"]
        console.writer.audit(record["actor"], f"alert.{record['stage']}", record["subject_id"], details)
        console.board.apply_adjudication(record)  # the reader applies it again from the topic: idempotent
        metrics.ADJUDICATIONS.labels(record["stage"], record.get("outcome") or record["decision"]).inc()

    async def healthz(_request: Request) -> Response:
        return JSONResponse({"ok": True})

    async def http_error(request: Request, exc: HTTPException) -> Response:
        if exc.status_code in (301, 302, 303, 307):
            return Response(status_code=exc.status_code, headers=exc.headers)
        return JSONResponse({"error": exc.detail}, status_code=exc.status_code, headers=NO_STORE)

    middleware: list[Middleware] = []
    if oidc is not None:
        from starlette.middleware.sessions import SessionMiddleware

        # Authlib keeps the OIDC state and nonce here during the redirect only.
        middleware.append(Middleware(SessionMiddleware, secret_key=secrets.token_urlsafe(32), session_cookie="lfr_oidc",
                                     same_site="lax", https_only=secure, max_age=600))

    @asynccontextmanager
    async def lifespan(_app: Starlette):
        yield

    return Starlette(
        routes=[
            Route("/", console_page),
            Route("/login", login_page, methods=["GET"]),
            Route("/login", login, methods=["POST"]),
            Route("/logout", logout, methods=["POST"]),
            Route("/auth/oidc/login", oidc_login),
            Route("/auth/oidc/callback", oidc_callback),
            Route("/report", report_page),
            Route("/fleet", fleet_page),
            Route("/api/fleet", fleet_api),
            Route("/api/national", national),
            Route("/api/alerts", alerts),
            Route("/api/stream", stream),
            Route("/api/alerts/{alert_id}/probe", probe_image),
            Route("/api/alerts/{alert_id}/reference", reference_image),
            Route("/api/alerts/{alert_id}/decision", decide, methods=["POST"]),
            Route("/api/alerts/{alert_id}/outcome", outcome, methods=["POST"]),
            Route("/healthz", healthz),
            Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"),
        ],
        middleware=middleware,
        exception_handlers={HTTPException: http_error},
        lifespan=lifespan,
    )
