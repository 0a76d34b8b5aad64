"""The catalog's pages, rendered on the server with Jinja.

Every page asks the registry's auth provider, as the ``/v2/`` API does, for
what it shows: the repository list for ``registry:catalog:*`` (then only
the repositories ``Grant.may_pull`` lets through) or, when the catalog is
not granted, for ``repository:<name>:pull`` of each repository on the page;
a repository's pages for ``repository:<name>:pull``; a delete for
``repository:<name>:delete``.  A repository the caller may not pull is
answered like one that does not exist.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from flask import Blueprint, Response, abort, current_app, g, redirect, render_template, request, url_for

from cargohold import events
from cargohold.auth import Access, Grant, authorize
from cargohold.errors import Denied, ManifestUnknown, NameInvalid, NameUnknown, RegistryError, Unauthorized
from cargohold.reference import check_digest, check_name
from cargohold.request_context import external_url

from cargohold_ui.catalog import Catalog, after, human_size, image_config_summary, iso_time, page_of

DEFAULT_PAGE = 50
MAX_PAGE = 500
#: At most this many repositories are read for one page of the list (a
#: caller who may pull few of many gets shorter pages, each bounded).
WALK_BUDGET = 1000
TOKEN_COOKIE = "cargohold_ui_token"
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}\Z")

#: Sent with every page of the catalog.  Nothing inline: scripts, styles
#: and images come from the registry itself.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"),
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def _state():
    return current_app.extensions["cargohold"]


def _catalog() -> Catalog:
    return current_app.extensions["cargohold-ui"]["catalog"]


def _settings() -> dict:
    return current_app.extensions["cargohold-ui"]["settings"]


# -- auth ----------------------------------------------------------------------


def _auth_request():
    """The request as the provider sees it: a token the token sign-in form
    stored in the cookie is sent as ``Authorization: Bearer``, as a registry
    client would."""
    token = request.cookies.get(TOKEN_COOKIE)
    if not token or request.headers.get("Authorization"):
        return request
    environ = dict(request.environ, HTTP_AUTHORIZATION=f"Bearer {token}")
    return request.__class__(environ)


def _ask(access: list[Access]) -> Grant | None:
    """The provider's grant, or ``None`` when it challenges or denies."""
    try:
        grant = authorize(_state().auth, _auth_request(), access)
    except (Unauthorized, Denied) as e:
        g.ui_challenge = e.headers.get("WWW-Authenticate")
        return None
    g.ui_user = grant.user
    return grant


def _signed_in() -> bool:
    return bool(request.headers.get("Authorization") or request.cookies.get(TOKEN_COOKIE))


def _may_pull(name: str) -> Grant:
    """Answer 404 (as for a repository that does not exist) unless the
    caller may pull ``name``."""
    try:
        check_name(name)
    except NameInvalid:
        abort(404)
    grant = _ask([Access("repository", name, ("pull",))])
    if grant is None:
        abort(404)
    return grant


def _may_delete(name: str) -> bool:
    if not (_settings()["delete"] and _state().config["storage"]["delete"]["enabled"]):
        return False
    if _state().config["storage"]["maintenance"]["readonly"]["enabled"]:
        return False
    return _ask([Access("repository", name, ("delete",))]) is not None


# -- helpers ---------------------------------------------------------------------


def _same_origin() -> bool:
    """Whether the request comes from a page of this registry, by the
    browser's ``Sec-Fetch-Site`` and ``Origin`` headers (where sent)."""
    if request.headers.get("Sec-Fetch-Site", "same-origin") != "same-origin":
        return False
    origin = request.headers.get("Origin")
    return not origin or urlsplit(origin).netloc == request.host


def _page_size() -> int:
    try:
        n = int(request.args.get("n", DEFAULT_PAGE))
    except ValueError:
        n = DEFAULT_PAGE
    return max(1, min(n, MAX_PAGE))


def registry_host() -> tuple[str, bool]:
    """The registry's public host as clients name it (``http.host`` when
    configured, else what the browser reached), and whether it is plain
    HTTP."""
    base = external_url("")
    scheme, _, rest = base.partition("://")
    return rest.rstrip("/"), scheme == "http"


def commands(name: str, reference: str, kind: str) -> list[tuple[str, str]]:
    """The copyable pull commands for ``name`` at ``reference``."""
    host, plain = registry_host()
    sep = "@" if ":" in reference else ":"
    ref = f"{host}/{name}{sep}{reference}"
    leaf = name.rpartition("/")[2]
    local = reference if sep == ":" else reference.partition(":")[2][:12]
    skopeo = ["skopeo copy"]
    if plain:
        skopeo.append("--src-tls-verify=false")
    if kind == "index":
        skopeo.append("--all")
    skopeo += [f"docker://{ref}", f"oci:{leaf}:{local}"]
    oras = ["oras pull"] + (["--plain-http"] if plain else []) + [ref]
    return [("docker", f"docker pull {ref}"), ("skopeo", " ".join(skopeo)), ("oras", " ".join(oras))]


def _render(template: str, status: int = 200, **context) -> Response:
    context.setdefault("user", g.get("ui_user"))
    context.setdefault("signed_in", _signed_in())
    # Offer a sign-in unless the registry lets anonymous callers do everything.
    context.setdefault("sign_in", not context["user"] and _ask([]) is None)
    resp = Response(render_template(template, **context), status=status, content_type="text/html; charset=utf-8")
    return resp


# -- the blueprint -----------------------------------------------------------------


def make_blueprint(prefix: str) -> Blueprint:
    bp = Blueprint("ui", __name__, url_prefix=prefix, template_folder="templates",
                   static_folder="static", static_url_path="/static")

    @bp.before_request
    def _credentials_accepted():
        """Credentials the provider refuses get one answer, a 401 asking for
        others, before any page asks about many repositories with them (each
        check of a wrong password costs a bcrypt verification)."""
        if request.endpoint in ("ui.static", "ui.logout") or not _signed_in():
            return None
        if _ask([]) is not None:
            return None
        challenge = g.get("ui_challenge") or ""
        resp = _render("cargohold_ui/login.html", status=401, failed=True, sign_in=False, token_form=False,
                       next=url_for("ui.repositories"))
        if challenge.lower().startswith("basic") and request.headers.get("Authorization"):
            resp.headers["WWW-Authenticate"] = challenge
        return resp

    @bp.after_request
    def _headers(resp: Response) -> Response:
        for key, value in SECURITY_HEADERS.items():
            resp.headers.setdefault(key, value)
        return resp

    bp.add_app_template_filter(human_size, "ui_size")
    bp.add_app_template_filter(lambda d: d.partition(":")[2][:12] if d else "", "ui_short")

    @bp.route("/")
    def repositories():
        """The repository list: ``q`` filters by substring, ``n``/``last``
        page through it; ``fragment=1`` answers the table rows only (the
        filter-as-you-type script)."""
        query = request.args.get("q", "").strip()[:255]
        last = request.args.get("last") or None
        n = _page_size()
        catalog = _catalog()
        grant = _ask([Access("registry", "catalog", ("*",))])
        if grant is not None:
            keep = grant.may_pull
        else:
            # No catalog right: list what the caller may pull, one by one.
            def keep(name: str) -> bool:
                return _ask([Access("repository", name, ("pull",))]) is not None
        if not query and last is None:
            catalog.warm()  # the listing searches need, read before the first keystroke
        names = catalog.search(last) if query else catalog.repositories(last)
        page = page_of(names, n, keep, query, budget=None if query else WALK_BUDGET)
        more = None
        if page.next_last:
            more = url_for("ui.repositories", **{k: v for k, v in (("q", query), ("n", request.args.get("n")),
                                                                   ("last", page.next_last)) if v})
        fragment = request.args.get("fragment")
        template = "cargohold_ui/_repository_rows.html" if fragment else "cargohold_ui/repositories.html"
        return _render(template, repositories=page.items, query=query, more=more, first=last is None,
                       partial=page.partial)

    @bp.route("/r/<path:name>")
    def repository(name: str):
        """A repository's tags: sorted by name (``n``/``last`` pagination)
        or by push time (``sort=pushed``, newest first; ``sort=-pushed``
        oldest first; ``page=`` numbers).  The other columns sort within
        the page, in the browser."""
        _may_pull(name)
        catalog = _catalog()
        try:
            tags = catalog.tags(name)
        except NameUnknown:
            abort(404)
        n = _page_size()
        sort = request.args.get("sort", "name")
        pushed = None
        if sort in ("pushed", "-pushed"):
            # Push times of every tag: one stat each, then one page of rows.
            pushed = {t: catalog.pushed(name, t) for t in tags}
            ordered = sorted(tags, key=lambda t: (pushed[t] or 0, t), reverse=(sort == "pushed"))
            try:
                number = max(1, int(request.args.get("page", 1)))
            except ValueError:
                number = 1
            chosen = ordered[(number - 1) * n: number * n]
            more = (url_for("ui.repository", name=name, sort=sort, page=number + 1, n=request.args.get("n"))
                    if number * n < len(ordered) else None)
        else:
            sort = "name"
            page = page_of(after(tags, request.args.get("last")), n)
            chosen = page.items
            more = (url_for("ui.repository", name=name, last=page.next_last, n=request.args.get("n"))
                    if page.next_last else None)
        rows = catalog.tag_rows(name, chosen, pushed)
        return _render("cargohold_ui/repository.html", name=name, rows=rows, total=len(tags), sort=sort, more=more,
                       may_delete=_may_delete(name))

    @bp.route("/r/<path:name>/-/manifest/<reference>")
    def manifest(name: str, reference: str):
        """A manifest or index by tag or digest: platforms, layers, config
        summary, referrers and pull commands."""
        _may_pull(name)
        catalog = _catalog()
        tag = None
        if ":" in reference:
            try:
                check_digest(reference)
            except RegistryError:
                abort(404)
            if not catalog.registry.manifests.has_revision(name, reference):
                abort(404)
            digest = reference
        else:
            if not _TAG.match(reference):
                abort(404)
            try:
                digest = catalog.registry.manifests.resolve_tag(name, reference)
            except ManifestUnknown:
                abort(404)
            tag = reference
        detail = catalog.detail(digest)
        if detail is None:
            abort(404)
        return _render(
            "cargohold_ui/manifest.html", name=name, tag=tag, digest=digest, detail=detail,
            config=image_config_summary(detail.config), referrers=catalog.referrers(name, digest),
            commands=commands(name, tag or digest, detail.summary.kind),
            pushed_iso=iso_time(catalog.pushed(name, tag)) if tag else "",
            may_delete=_may_delete(name))

    @bp.route("/r/<path:name>/-/delete", methods=["GET", "POST"])
    def delete(name: str):
        """Confirm (GET), then delete (POST) a tag (``tag=``) or a manifest
        (``digest=``); only with ``ui.delete`` and ``storage.delete.enabled``,
        for callers granted ``delete``, from a page of this registry."""
        _may_pull(name)
        if not _may_delete(name):
            abort(404)
        tag, digest = request.values.get("tag", ""), request.values.get("digest", "")
        if tag and not _TAG.match(tag) or not tag and not digest:
            abort(404)
        if digest:
            try:
                check_digest(digest)
            except RegistryError:
                abort(404)
        if request.method == "GET":
            return _render("cargohold_ui/delete.html", name=name, tag=tag, digest=digest)
        if not _same_origin() or request.form.get("confirm") != (tag or digest):
            abort(403)
        manifests = _catalog().registry.manifests
        try:
            if tag:
                manifests.delete_tag(name, tag)
                events.emit(events.DELETE, name, tag=tag)
            else:
                manifests.delete(name, digest)
                events.emit(events.DELETE, name, digest=digest)
        except ManifestUnknown:
            abort(404)
        return redirect(url_for("ui.repository", name=name), 303)

    @bp.route("/login", methods=["GET", "POST"])
    def login():
        """Sign in.  With Basic credentials (htpasswd) the browser asks for
        them after this page's 401; with token auth, a form takes a token
        from the token server and keeps it in an HttpOnly cookie."""
        target = request.values.get("next") or url_for("ui.repositories")
        if not target.startswith(request.script_root + current_app.extensions["cargohold-ui"]["prefix"]):
            target = url_for("ui.repositories")
        if request.method == "POST":
            token = request.form.get("token", "").strip()
            resp = redirect(target, 303)
            if token:
                resp.set_cookie(TOKEN_COOKIE, token, httponly=True, samesite="Strict",
                                secure=request.scheme == "https",
                                path=request.script_root + current_app.extensions["cargohold-ui"]["prefix"])
            return resp
        grant = _ask([])
        if grant is not None and grant.user:
            return redirect(target, 303)
        challenge = g.get("ui_challenge") or ""
        if challenge.lower().startswith("basic"):
            resp = _render("cargohold_ui/login.html", status=401, token_form=False, next=target)
            resp.headers["WWW-Authenticate"] = challenge
            return resp
        return _render("cargohold_ui/login.html", status=401 if challenge else 200, token_form=bool(challenge),
                       no_auth=not challenge, next=target)

    @bp.route("/logout", methods=["POST"])
    def logout():
        resp = redirect(url_for("ui.repositories"), 303)
        resp.delete_cookie(TOKEN_COOKIE, path=request.script_root + current_app.extensions["cargohold-ui"]["prefix"])
        return resp

    return bp


def render_error(error: RegistryError) -> Response:
    """An error of a catalog page as an HTML page (the API keeps its JSON)."""
    status = error.status
    message = "Not found" if status == 404 else (error.message or "Error")
    resp = _render("cargohold_ui/error.html", status=status, message=message, code=error.code, status_code=status)
    # The page's status and headers are the error's (Allow, Retry-After), but
    # not a challenge: signing in is the sign-in page's business.
    for key, value in error.headers.items():
        if key.lower() != "www-authenticate":
            resp.headers[key] = value
    for key, value in SECURITY_HEADERS.items():
        resp.headers[key] = value
    return resp

