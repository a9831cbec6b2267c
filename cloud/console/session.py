"""Console log-in: a token typed once, kept in an HttpOnly ``SameSite=Strict`` cookie.

The cookie holds the token itself (nothing is kept on the server, so any API replica serves any page).
Pages read it on navigation; the pages' scripts call the JSON API with it plus the console header
(see :mod:`cloud.auth`). Gateway tokens are refused: the console is for people.
"""

from __future__ import annotations

from typing import Annotated, Final
from urllib.parse import parse_qs, quote

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from cloud.auth import CONSOLE_COOKIE, HUMAN_ROLES, Principal, principal_for
from cloud.console.html import esc
from cloud.deps import EngineDep, SettingsDep
from cloud.errors import ApiError

#: The cookie lasts a working day; log in again after.
COOKIE_MAX_AGE_S: Final = 12 * 3600
_MAX_FORM_BYTES: Final = 4096


def _login_redirect(request: Request) -> ApiError:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return ApiError(303, "log in first", headers={"Location": f"/console/login?next={quote(target, safe='')}"})


def console_principal(request: Request, engine: EngineDep, settings: SettingsDep) -> Principal:
    """The person behind the console cookie; a redirect to the log-in page otherwise."""
    token = request.cookies.get(CONSOLE_COOKIE)
    principal = None if not token else principal_for(token, settings.admin_token.get_secret_value(), engine)
    if principal is None or principal.role not in HUMAN_ROLES:
        raise _login_redirect(request)
    return principal


ConsolePrincipal = Annotated[Principal, Depends(console_principal)]


def _safe_next(value: str | None) -> str:
    """Only a console path (never another site) after logging in."""
    if value and value.startswith("/console/") and not value.startswith("//") and "\\" not in value:
        return value
    return "/console/fleet"


def login_form(next_path: str | None = None, error: str | None = None, status_code: int = 200) -> HTMLResponse:
    message = f'<p class="error" role="alert">{esc(error)}</p>' if error else ""
    doc = f"""<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Log in · Edgehouse</title>
<link rel="stylesheet" href="/console/static/console.css"></head><body class="login"><main>
<h1>Edgehouse console</h1>{message}<form method="post" action="/console/login">
<input type="hidden" name="next" value="{esc(_safe_next(next_path))}">
<label>API token <input type="password" name="token" autocomplete="current-password" required autofocus></label>
<button type="submit">Log in</button></form>
<p class="hint">An admin, operator or planner token (<code>edgehouse-cloud token create --role operator</code>).</p>
</main></body></html>"""
    return HTMLResponse(doc, status_code=status_code, headers={"Cache-Control": "no-store"})


async def log_in(request: Request, engine: EngineDep, settings: SettingsDep) -> Response:
    raw = await request.body()
    if len(raw) > _MAX_FORM_BYTES:
        return login_form(error="the form is too large", status_code=413)
    form = parse_qs(raw.decode("utf-8", errors="replace"))
    token = (form.get("token") or [""])[0].strip()
    next_path = (form.get("next") or [None])[0]
    principal = None if not token else principal_for(token, settings.admin_token.get_secret_value(), engine)
    if principal is None:
        return login_form(next_path, "unknown token", status_code=401)
    if principal.role not in HUMAN_ROLES:
        return login_form(next_path, "gateway tokens cannot log in to the console", status_code=403)
    response = RedirectResponse(_safe_next(next_path), status_code=303)
    response.set_cookie(CONSOLE_COOKIE, token, max_age=COOKIE_MAX_AGE_S, httponly=True, samesite="strict",
                        secure=request.url.scheme == "https", path="/")
    return response


def log_out() -> Response:
    response = RedirectResponse("/console/login", status_code=303)
    response.delete_cookie(CONSOLE_COOKIE, path="/")
    return response
