"""Directory pages: the public calendar, activity page, print list, PDF, iCalendar feed and open
data; and, behind login, the organisations' own pages and the coordinator's moderation."""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from itertools import groupby
from typing import Any, TypeVar

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    url_for,
)
from flask.typing import ResponseReturnValue
from flask_babel import format_date, get_locale
from flask_babel import gettext as _
from flask_login import current_user
from markupsafe import Markup
from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from slussen.accounts.auth import public
from slussen.accounts.models import User
from slussen.accounts.roles import Role
from slussen.config import local_zone, today_local
from slussen.db import attempt, db_session
from slussen.directory import hsds, ics, printing
from slussen.directory.categories import AGE_GROUPS, SECTORS, category_labels, interest_categories
from slussen.directory.forms import (
    PER_PAGE,
    ActionForm,
    ActivityForm,
    ApproveForm,
    OrganisationForm,
    RepresentativeForm,
    ReturnForm,
    choices,
    parse_calendar_query,
)
from slussen.directory.models import CONTENT_FIELDS, Activity, ActivityRevision, Organisation
from slussen.directory.schedule import ScheduleError, describe
from slussen.directory.services import (
    MAX_RANGE_DAYS,
    ActivityData,
    InvalidActivity,
    OccasionRow,
    add_representative,
    approve_revision,
    can_moderate,
    can_view_directory,
    create_organisation,
    directory_version,
    find_activities,
    find_occasions,
    is_stale,
    latest_revision,
    load_activity,
    load_organisation,
    load_public_activity,
    load_revision,
    may_edit_organisation,
    member_organisation_ids,
    next_occasions,
    pending_revisions,
    public_areas,
    representatives,
    return_revision,
    schedule_of,
    set_withdrawn,
    stale_activities,
    submit_activity,
    submit_revision,
    update_organisation,
    verify_activity,
)
from slussen.errors import Conflict, Invalid
from slussen.i18n import format_clock, ui_language

bp = Blueprint("directory", __name__, template_folder="templates")

T = TypeVar("T")

#: How many occasions the print list and its PDF hold at most.
PRINT_LIMIT = 300


def today() -> dt.date:
    return today_local()


# --- Template helpers ----------------------------------------------------------------------


@bp.app_template_filter("long_date")
def long_date(day: dt.date) -> str:
    """ "tisdag 5 mars 2026"."""
    return str(format_date(day, "full"))


@bp.app_template_filter("clock")
def clock(moment: dt.datetime | dt.time) -> str:
    """ "10.00" in Swedish, "10:00" in English."""
    return format_clock(moment)


def category_label(code: str) -> str:
    return category_labels(ui_language()).get(code, code)


def age_label(code: str) -> str:
    labels = AGE_GROUPS.get(code)
    if labels is None:
        return code
    return labels[1] if ui_language() == "en" else labels[0]


def language_name(code: str) -> str:
    locale = get_locale()
    names = locale.languages if locale else {}
    return str(names.get(code, code))


@bp.app_template_filter("category_names")
def category_names(codes: list[str]) -> str:
    return ", ".join(category_label(c) for c in codes)


@bp.app_template_filter("age_names")
def age_names(codes: list[str]) -> str:
    return ", ".join(age_label(c) for c in codes)


@bp.app_template_filter("language_names")
def language_names(codes: list[str]) -> str:
    return ", ".join(language_name(c) for c in codes)


@bp.app_context_processor
def _directory_helpers() -> dict[str, Any]:
    def schedule_text(revision: ActivityRevision) -> str:
        return describe(schedule_of(revision))

    return {
        "category_label": category_label,
        "age_label": age_label,
        "language_name": language_name,
        "schedule_text": schedule_text,
        "sector_label": lambda code: SECTORS.get(code, code),
    }


# --- Public pages --------------------------------------------------------------------------


def _query() -> Any:
    return parse_calendar_query(
        request.args, today=today(), categories=[c.id for c in interest_categories()]
    )


def _by_day(rows: list[OccasionRow]) -> list[tuple[dt.date, list[OccasionRow]]]:
    return [(day, list(group)) for day, group in groupby(rows, key=lambda r: r.starts_at.date())]


class _PageCache:
    """Rendered calendar bodies by (directory version, day, language, query), per process.

    The public calendar is the most requested page and the same for everyone; its body changes
    only when the directory does (`directory_version`, bumped in the same transaction as every
    change of published content) or the day turns. The page around it (language switch, CSRF
    token) is still rendered per request. Bounded, least recently used out first.
    """

    def __init__(self, size: int = 512) -> None:
        self.size = size
        self.items: OrderedDict[tuple[Any, ...], Markup] = OrderedDict()
        self.lock = threading.Lock()

    def get(self, key: tuple[Any, ...]) -> Markup | None:
        with self.lock:
            found = self.items.get(key)
            if found is not None:
                self.items.move_to_end(key)
            return found

    def put(self, key: tuple[Any, ...], value: Markup) -> None:
        with self.lock:
            self.items[key] = value
            self.items.move_to_end(key)
            while len(self.items) > self.size:
                self.items.popitem(last=False)


calendar_cache = _PageCache()

#: How long a process trusts the directory version it read last (seconds): an approved change
#: reaches every process's calendar within this time. A read-only page then needs no database
#: round trip at all, which on SQLite would otherwise take the write lock (see slussen.db).
VERSION_TTL = 1.0


def _current_version() -> tuple[int, str]:
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    if app.testing:
        return directory_version(db_session())
    now = time.monotonic()
    cached = app.extensions.get("slussen.directory_version")
    if cached is not None and now - cached[0] < VERSION_TTL:
        stamp: tuple[int, str] = cached[1]
        return stamp
    stamp = directory_version(db_session())
    app.extensions["slussen.directory_version"] = (now, stamp)
    return stamp


def _calendar_body(session: Session) -> Markup:
    query = _query()
    rows, total = find_occasions(
        session, query.filters, offset=(query.page - 1) * PER_PAGE, limit=PER_PAGE
    )
    pages = max(1, -(-total // PER_PAGE))
    return Markup(  # noqa: S704 - Jinja's autoescaped output
        render_template(
            "directory/_calendar_body.html",
            query=query,
            days=_by_day(rows),
            total=total,
            page=min(query.page, pages),
            pages=pages,
            categories=interest_categories(),
            areas=public_areas(session),
            age_groups=AGE_GROUPS,
        )
    )


@bp.route("/aktiviteter")
@public
def calendar() -> ResponseReturnValue:
    """The public calendar of upcoming occasions with filters (a GET form, no JavaScript)."""
    key = (
        _current_version(),
        today(),
        ui_language(),
        tuple(sorted(request.args.items(multi=True))),
    )
    body = calendar_cache.get(key)
    if body is None:
        body = _calendar_body(db_session())
        calendar_cache.put(key, body)
    return render_template("directory/calendar.html", body=body)


@bp.route("/aktiviteter/<int:activity_id>")
@public
def activity_page(activity_id: int) -> ResponseReturnValue:
    activity = load_public_activity(db_session(), activity_id)
    now = dt.datetime.now(local_zone())
    return render_template(
        "directory/activity.html",
        activity=activity,
        revision=activity.published,
        upcoming=next_occasions(activity, now, 8),
        stale=is_stale(activity, today()),
    )


def _print_rows() -> tuple[Any, list[OccasionRow], int]:
    query = _query()
    rows, total = find_occasions(db_session(), query.filters, limit=PRINT_LIMIT)
    return query, rows, total


@bp.route("/aktiviteter/utskrift")
@public
def printable() -> ResponseReturnValue:
    """A plain list to print and hand to a patient: the same filters as the calendar."""
    query, rows, total = _print_rows()
    return render_template(
        "directory/print.html", query=query, days=_by_day(rows), total=total, limit=PRINT_LIMIT
    )


@bp.route("/aktiviteter/utskrift.pdf")
@public
def printable_pdf() -> ResponseReturnValue:
    query, rows, _total = _print_rows()
    labels = category_labels("sv")
    pdf = printing.occasion_list_pdf(query.filters, rows, labels)
    return Response(
        pdf,
        mimetype="application/pdf",
        headers={"Content-Disposition": 'inline; filename="aktiviteter.pdf"'},
    )


@bp.route("/aktiviteter.ics")
@public
def ics_feed() -> ResponseReturnValue:
    """The iCalendar feed: activities with an occasion in the coming year matching the filters."""
    query = parse_calendar_query(
        request.args,
        today=today(),
        categories=[c.id for c in interest_categories()],
        max_days=MAX_RANGE_DAYS,
    )
    filters = query.filters
    if query.period == "this_week" and not request.args.get("period"):
        from dataclasses import replace

        filters = replace(filters, start=today(), end=today() + dt.timedelta(days=MAX_RANGE_DAYS))
    activities = find_activities(db_session(), filters)
    # On the configured address, never the request's Host header (a feed is cached and shared).
    settings = current_app.extensions["slussen.settings"]
    urls = {
        a.id: settings.absolute_url(
            url_for(".activity_page", activity_id=a.id).removeprefix(request.script_root)
        )
        for a in activities
    }
    return Response(
        ics.build_calendar(activities, urls, category_labels(ui_language())),
        mimetype="text/calendar",
        headers={"Content-Disposition": 'inline; filename="aktiviteter.ics"'},
    )


@bp.route("/aktiviteter/oppna-data.json")
@public
def open_data() -> ResponseReturnValue:
    """The published directory as Open Referral HSDS 3 JSON (organizations with services)."""
    document = hsds.export_directory(db_session())
    return Response(
        json.dumps(document, ensure_ascii=False, indent=1),
        mimetype="application/json",
        headers={"Content-Disposition": 'inline; filename="aktiviteter-hsds.json"'},
    )


# --- Inside the app ------------------------------------------------------------------------


def _user() -> User:
    user: User = current_user.user
    if not can_view_directory(user):
        abort(403)
    return user


def _authorised(load: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a load-and-authorise helper for the current user; its NotFound (outside the user's
    organisations) and NotPermitted (read-only) become 404 and 403 in the app's error handler."""
    return load(db_session(), _user(), *args, **kwargs)


def _organisations_for(session: Session, user: User) -> list[Organisation]:
    stmt = select(Organisation).order_by(Organisation.name)
    if user.role == Role.ORG_REP:
        stmt = stmt.where(Organisation.id.in_(member_organisation_ids(session, user)))
    return list(session.scalars(stmt))


@bp.route("/katalog")
def home() -> ResponseReturnValue:
    """The directory inside the app: an org_rep's own organisations; the coordinator's queue and
    stale activities; read-only lists for coaches and staff."""
    user = _user()
    session = db_session()
    organisations = _organisations_for(session, user)
    own_ids = None if user.role != Role.ORG_REP else {o.id for o in organisations}
    return render_template(
        "directory/home.html",
        organisations=organisations,
        pending=pending_revisions(session) if can_moderate(user) else [],
        stale=stale_activities(session, today=today(), organisation_ids=own_ids)
        if (can_moderate(user) or user.role == Role.ORG_REP)
        else [],
        can_moderate=can_moderate(user),
    )


@bp.route("/katalog/organisationer/ny", methods=["GET", "POST"])
def organisation_new() -> ResponseReturnValue:
    user = _user()
    if not can_moderate(user):
        abort(403)
    form = OrganisationForm()
    if form.validate_on_submit():
        try:
            with attempt():
                organisation = create_organisation(
                    db_session(), user, **{k: (form[k].data or "").strip() for k in _org_fields()}
                )
        except InvalidActivity as exc:
            form.show_refusal(exc)
        else:
            flash(_("The organisation was added."), "success")
            return redirect(url_for(".organisation", organisation_id=organisation.id))
    return render_template("directory/organisation_form.html", form=form, organisation=None)


def _org_fields() -> tuple[str, ...]:
    return ("name", "sector", "description", "contact_name", "email", "phone", "website", "area")


@bp.route("/katalog/organisationer/<int:organisation_id>")
def organisation(organisation_id: int) -> ResponseReturnValue:
    user = _user()
    session = db_session()
    org = _authorised(load_organisation, organisation_id)
    activities = list(
        session.scalars(
            select(Activity)
            .where(Activity.organisation_id == org.id)
            .options(selectinload(Activity.revisions), selectinload(Activity.published))
            .order_by(Activity.id)
        )
    )
    if user.role in (Role.COACH, Role.STAFF):
        activities = [a for a in activities if a.published is not None]
    return render_template(
        "directory/organisation.html",
        organisation=org,
        activities=activities,
        latest=latest_revision,
        can_edit=may_edit_organisation(session, user, org),
        can_moderate=can_moderate(user),
        representatives=representatives(session, org) if can_moderate(user) else [],
        rep_form=RepresentativeForm(),
        today=today(),
        is_stale=is_stale,
    )


@bp.route("/katalog/organisationer/<int:organisation_id>/andra", methods=["GET", "POST"])
def organisation_edit(organisation_id: int) -> ResponseReturnValue:
    user = _user()
    org = _authorised(load_organisation, organisation_id, edit=True)
    form = OrganisationForm(obj=org)
    if form.validate_on_submit():
        try:
            with attempt():
                update_organisation(
                    db_session(),
                    user,
                    org,
                    **{k: (form[k].data or "").strip() for k in _org_fields()},
                )
        except InvalidActivity as exc:
            form.show_refusal(exc)
        else:
            flash(_("The changes were saved."), "success")
            return redirect(url_for(".organisation", organisation_id=org.id))
    return render_template("directory/organisation_form.html", form=form, organisation=org)


@bp.route("/katalog/organisationer/<int:organisation_id>/representanter", methods=["POST"])
def representative_add(organisation_id: int) -> ResponseReturnValue:
    user = _user()
    org = _authorised(load_organisation, organisation_id)
    if not can_moderate(user):
        abort(403)
    form = RepresentativeForm()
    session = db_session()
    if form.validate_on_submit():
        rep = session.scalar(select(User).where(User.username == form.username.data.strip()))
        if rep is None:
            flash(_("There is no user with that username."), "error")
        else:
            try:
                with attempt():
                    add_representative(session, user, org, rep)
            except Invalid as exc:
                flash(str(exc), "error")
            else:
                flash(_("The representative was added."), "success")
    return redirect(url_for(".organisation", organisation_id=org.id))


def _activity_form() -> ActivityForm:
    form = ActivityForm()
    form.categories.choices = choices(
        [(c.id, c.label(ui_language())) for c in interest_categories()]
    )
    return form


def _submitted(form: ActivityForm) -> ActivityData | None:
    if not form.validate_on_submit():
        return None
    try:
        return form.to_data()
    except ScheduleError as exc:
        name = getattr(exc, "field", "repeat")
        form[name].errors = [*form[name].errors, str(exc)]
        return None


def _save_activity(
    form: ActivityForm,
    user: User,
    target: Organisation | Activity,
    submit: Callable[..., ActivityRevision],
) -> ResponseReturnValue:
    """The activity form for a new activity of an organisation or a change to an activity:
    submit a revision for moderation with `submit`, or show the form again with what was
    wrong."""
    activity = target if isinstance(target, Activity) else None
    organisation = activity.organisation if activity else target
    data = _submitted(form)
    if data is not None:
        try:
            with attempt():
                revision = submit(
                    db_session(),
                    user,
                    target,
                    data,
                    known_categories=[c.id for c in interest_categories()],
                    today=today(),
                )
        except InvalidActivity as exc:
            form.show_refusal(exc)
        else:
            flash(_message_after_submit(user), "success")
            return redirect(url_for(".activity", activity_id=revision.activity_id))
    return render_template(
        "directory/activity_form.html", form=form, organisation=organisation, activity=activity
    )


@bp.route("/katalog/organisationer/<int:organisation_id>/aktiviteter/ny", methods=["GET", "POST"])
def activity_new(organisation_id: int) -> ResponseReturnValue:
    user = _user()
    org = _authorised(load_organisation, organisation_id, edit=True)
    return _save_activity(_activity_form(), user, org, submit_activity)


def _message_after_submit(user: User) -> str:
    if can_moderate(user):
        return str(_("The activity is published."))
    return str(_("Thank you! The coordinator will review the activity before it is published."))


@bp.route("/katalog/aktiviteter/<int:activity_id>")
def activity(activity_id: int) -> ResponseReturnValue:
    user = _user()
    session = db_session()
    act = _authorised(load_activity, activity_id)
    editable = may_edit_organisation(session, user, act.organisation)
    return render_template(
        "directory/activity_admin.html",
        activity=act,
        revision=act.published,
        revisions=list(reversed(act.revisions)) if editable else [],
        can_edit=editable,
        can_moderate=can_moderate(user),
        action_form=ActionForm(),
        stale=is_stale(act, today()),
        fields=CONTENT_FIELDS,
    )


@bp.route("/katalog/aktiviteter/<int:activity_id>/andra", methods=["GET", "POST"])
def activity_edit(activity_id: int) -> ResponseReturnValue:
    user = _user()
    act = _authorised(load_activity, activity_id, edit=True)
    form = _activity_form()
    if request.method == "GET":
        base = latest_revision(act)
        if base is not None:
            form.fill_from(ActivityData.from_revision(base))
    return _save_activity(form, user, act, submit_revision)


@bp.route("/katalog/aktiviteter/<int:activity_id>/kontrollerad", methods=["POST"])
def activity_verify(activity_id: int) -> ResponseReturnValue:
    user = _user()
    act = _authorised(load_activity, activity_id, edit=True)
    if ActionForm().validate_on_submit():
        try:
            with attempt():
                verify_activity(db_session(), user, act, today=today())
        except Invalid as exc:
            flash(str(exc), "error")
        else:
            flash(_("Thank you! The activity is marked as checked today."), "success")
    return redirect(url_for(".activity", activity_id=act.id))


@bp.route("/katalog/aktiviteter/<int:activity_id>/dold", methods=["POST"])
def activity_withdraw(activity_id: int) -> ResponseReturnValue:
    user = _user()
    act = _authorised(load_activity, activity_id, edit=True)
    if ActionForm().validate_on_submit():
        session = db_session()
        withdrawn = not act.is_withdrawn
        set_withdrawn(session, user, act, withdrawn, today=today())
        flash(
            _("The activity is hidden from the calendar.")
            if withdrawn
            else _("The activity is shown in the calendar again."),
            "success",
        )
    return redirect(url_for(".activity", activity_id=act.id))


@bp.route("/katalog/granska")
def moderation() -> ResponseReturnValue:
    user = _user()
    if not can_moderate(user):
        abort(403)
    return render_template("directory/moderation.html", pending=pending_revisions(db_session()))


@bp.route("/katalog/andringar/<int:revision_id>")
def revision(revision_id: int) -> ResponseReturnValue:
    rev = _authorised(load_revision, revision_id)
    published = rev.activity.published
    changed = [
        name
        for name in CONTENT_FIELDS
        if published is None or getattr(published, name) != getattr(rev, name)
    ]
    return render_template(
        "directory/revision.html",
        rev=rev,
        published=published if published is not None and published.id != rev.id else None,
        changed=changed,
        field_labels=field_labels(),
        can_moderate=can_moderate(_user()),
        approve_form=ApproveForm(prefix="approve"),
        return_form=ReturnForm(prefix="return"),
    )


def field_labels() -> dict[str, str]:
    """The activity form's labels by content field, for the review table."""
    form = ActivityForm(meta={"csrf": False})
    labels = {name: str(form[name].label.text) for name in CONTENT_FIELDS if name in form}
    labels["rrule"] = _("Repeats")
    return labels


def _moderate(
    revision_id: int, decide: Callable[[Session, User, ActivityRevision], Any]
) -> ResponseReturnValue | None:
    user = _user()
    if not can_moderate(user):
        abort(403)
    rev = _authorised(load_revision, revision_id)
    try:
        with attempt():
            decide(db_session(), user, rev)
    except Conflict as exc:
        # Decided by another coordinator meanwhile: say so on the revision's page.
        flash(str(exc), "error")
        conflict: ResponseReturnValue = (redirect(url_for(".revision", revision_id=rev.id)), 409)
        return conflict
    except Invalid as exc:
        flash(str(exc), "error")
        return redirect(url_for(".revision", revision_id=rev.id))
    return None


@bp.route("/katalog/andringar/<int:revision_id>/godkann", methods=["POST"])
def revision_approve(revision_id: int) -> ResponseReturnValue:
    form = ApproveForm(prefix="approve")
    if not form.validate_on_submit():
        return redirect(url_for(".revision", revision_id=revision_id))
    refused = _moderate(
        revision_id,
        lambda s, u, r: approve_revision(s, u, r, today=today(), comment=form.comment.data or ""),
    )
    if refused is not None:
        return refused
    flash(_("Approved: the activity is public."), "success")
    return redirect(url_for(".moderation"))


@bp.route("/katalog/andringar/<int:revision_id>/skicka-tillbaka", methods=["POST"])
def revision_return(revision_id: int) -> ResponseReturnValue:
    form = ReturnForm(prefix="return")
    if not form.validate_on_submit():
        flash(_("Write what needs to change."), "error")
        return redirect(url_for(".revision", revision_id=revision_id))
    refused = _moderate(
        revision_id, lambda s, u, r: return_revision(s, u, r, comment=form.comment.data or "")
    )
    if refused is not None:
        return refused
    flash(_("Returned to the organisation with your comment."), "success")
    return redirect(url_for(".moderation"))
