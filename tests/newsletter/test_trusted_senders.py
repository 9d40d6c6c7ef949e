"""Bad input from the callers that hold a secret still gets a 4xx, never a 500.

The staff preview (``X-API-Key``) and the mail-events webhook (``X-Webhook-Secret``) are
called by the newsroom and the mail provider, but a trusted sender can still send the
wrong thing: a day at the ends of the calendar, a time whose UTC form does not exist,
30,000 nested brackets, a number of 5,000 digits, a list where a string belongs. The
findings were 500s; each now gets a 4xx that says what is wrong, and nothing is recorded.

Defences: ``storable.check_day`` and ``storable.moment_in_utc`` (every stored day and
time stays two days inside the calendar), the typed checks of the webhook's
``_parse_event``, and the request guard of ``security.py``, which answers a JSON body
too deep for the parser with a 400 instead of letting ``RecursionError`` out.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select
from support.newsletter import DAY, publish

from auth_service.articles.store import ArticleError, import_articles
from auth_service.extensions import db
from auth_service.models import Article, Edition, OutboxMessage, Suppression
from auth_service.storable import FIRST_DAY, LAST_DAY

PREVIEW_KEY = "preview-key-0123456789"
WEBHOOK_SECRET = "hook-secret-0123456789"
TRUSTED = pytest.mark.settings(
    NEWSLETTER_PREVIEW_KEY=PREVIEW_KEY, MAIL_EVENTS_SECRET=WEBHOOK_SECRET
)
BOUNCE = {"address": "bounce@example.com", "event": "bounce", "time": "2025-03-10T08:00:00Z"}
CALENDAR_ENDS = ["0001-01-01", "0001-01-02", "9999-12-30", "9999-12-31"]
PROPERTY = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def preview(client, day: str, **headers):
    """The staff preview of the daily edition of ``day``, with the key."""
    return client.get(
        "/newsletter/daily/preview",
        query_string={"date": day},
        headers={"X-API-Key": PREVIEW_KEY, **headers},
    )


def post_events(client, body, **headers):
    """POST to the webhook with the secret; a str body is sent as it is, as JSON."""
    data = body if isinstance(body, str | bytes) else json.dumps(body)
    return client.post(
        "/webhooks/mail-events",
        data=data,
        content_type="application/json",
        headers={"X-Webhook-Secret": WEBHOOK_SECRET, **headers},
    )


def suppressed() -> int:
    """How many addresses the webhook has recorded."""
    db.session.rollback()
    return db.session.scalar(select(func.count(Suppression.id)))


# --- The staff preview -------------------------------------------------------------------


@TRUSTED
@pytest.mark.parametrize("day", CALENDAR_ENDS)
def test_a_preview_at_the_ends_of_the_calendar_is_a_400_naming_the_range(client, day):
    """Defence: ``storable.check_day`` in the preview. The finding: 0001-01-01 and
    9999-12-31 overflowed in the day's arithmetic (500)."""
    page = preview(client, day, **{"Accept-Language": "en"})
    assert page.status_code == 400 and page.mimetype == "text/html"
    assert f"between {FIRST_DAY.isoformat()} and {LAST_DAY.isoformat()}" in page.get_data(
        as_text=True
    )
    answer = preview(client, day, Accept="application/json")
    assert answer.status_code == 400
    assert "0001-01-03" in answer.get_json()["error"]["message"]  # in French, the default
    assert db.session.scalar(select(func.count(Edition.id))) == 0


@TRUSTED
@pytest.mark.parametrize("day", [FIRST_DAY, LAST_DAY])
def test_the_first_and_last_days_that_have_an_edition_are_shown(client, day):
    """Defence: ``storable.check_day`` refuses only the days whose arithmetic would
    overflow: the first and last it allows render an edition."""
    publish()
    response = preview(client, day.isoformat())
    assert response.status_code == 200, response.get_data(as_text=True)[:300]


@TRUSTED
@PROPERTY
@given(day=st.dates())
@example(day=date.min)
@example(day=date.max)
def test_any_day_of_the_calendar_is_a_preview_or_a_400(client, day):
    """Defence: ``storable.check_day`` in the preview: any day is an edition or a 400."""
    response = preview(client, day.isoformat())
    expected = 200 if FIRST_DAY <= day <= LAST_DAY else 400
    assert response.status_code == expected


@pytest.mark.parametrize("day", CALENDAR_ENDS)
def test_sending_an_edition_at_the_ends_of_the_calendar_says_why_and_queues_nothing(runner, day):
    """Defence: ``editions.articles_of`` raises ``EditionError`` before the arithmetic:
    ``newsletter send --date 9999-12-31`` was a traceback."""
    publish()
    result = runner.invoke(args=["newsletter", "send", "daily", "--date", day])
    assert result.exit_code != 0
    assert "there is no edition of" in result.output and "between 0001-01-03" in result.output
    assert "Traceback" not in result.output
    assert db.session.scalar(select(func.count(OutboxMessage.id))) == 0


def test_sending_the_edition_of_a_newsletter_named_in_bytes_that_are_not_utf8(runner):
    """Defence: ``cli.send_command`` checks the slug first. A slug from a command line
    of Latin-1 bytes arrives with lone surrogates."""
    result = runner.invoke(
        args=["newsletter", "send", "quotidienn\udce9", "--date", DAY.isoformat()]
    )
    assert result.exit_code == 2 and "no newsletter" in result.output
    assert "Traceback" not in result.output


# --- The mail-events webhook: times -------------------------------------------------------


@TRUSTED
@pytest.mark.parametrize(
    "moment",
    [
        "0001-01-01T00:00:00+14:00",  # its UTC form is in year 0
        "9999-12-31T23:59:59-14:00",  # its UTC form is in year 10000
        "0001-01-01T00:00:00Z",
        "9999-12-31T23:59:59Z",
        "0001-01-02T23:59:59+00:00",
        "9999-12-30T00:00:00Z",
    ],
)
def test_a_time_at_the_ends_of_the_calendar_is_refused_and_nothing_recorded(client, moment):
    """Defence: ``storable.moment_in_utc`` in the webhook. The finding: such a time
    overflowed when converted to UTC for storage (500)."""
    response = post_events(
        client, [{**BOUNCE, "address": "first@example.com"}, {**BOUNCE, "time": moment}]
    )
    assert response.status_code == 422
    [rejected] = response.get_json()["error"]["rejected"]
    assert rejected["index"] == 1
    assert rejected["error"] == (
        "'time' is out of range: it must lie between 0001-01-03 and 9999-12-29"
    )
    assert suppressed() == 0


@TRUSTED
@pytest.mark.parametrize("moment", ["0001-01-03T00:00:00Z", "9999-12-29T23:59:59.999999Z"])
def test_the_first_and_last_times_stored_are_shown_on_the_readers_page(app, client, reader, moment):
    """Defence: ``storable.moment_in_utc`` keeps two days of margin: a time it accepts
    is shown in the site's time zone without overflowing."""
    response = post_events(client, {**BOUNCE, "address": "edge@example.com", "time": moment})
    assert response.status_code == 200
    db.session.rollback()
    stored = db.session.scalar(select(Suppression.reported_at))
    assert stored == datetime.fromisoformat(moment.replace("Z", "+00:00"))
    reader.sign_in("edge@example.com")
    assert client.get("/account").status_code == 200  # shown in the site's time zone


@TRUSTED
@PROPERTY
@given(moment=st.datetimes(timezones=st.timezones()))
@example(moment=datetime.min.replace(tzinfo=UTC))
@example(moment=datetime.max.replace(tzinfo=UTC))
def test_any_time_in_any_zone_is_recorded_as_that_instant_or_refused(client, moment):
    """Defence: ``storable.moment_in_utc``, for any moment in any zone Hypothesis knows."""
    response = post_events(
        client, {**BOUNCE, "address": "any@example.com", "time": moment.isoformat()}
    )
    assert response.status_code in (200, 422), response.get_data(as_text=True)[:200]
    if response.status_code == 200:
        db.session.rollback()
        # In UTC: PEP 495 makes an ambiguous local time unequal to any other zone's.
        assert db.session.scalar(select(Suppression.reported_at)) == moment.astimezone(UTC)
    else:
        assert "'time'" in response.get_json()["error"]["rejected"][0]["error"]


@TRUSTED
@PROPERTY
@given(text=st.text(max_size=80))
@example(text="2025-03-10T08:00:00+24:00")
@example(text="+002025-03-10T08:00:00Z")
@example(text="2025-03-10T08:00:00" + "0" * 60 + "Z")
def test_any_text_as_a_time_is_recorded_or_refused_by_name(client, text):
    """Defence: the webhook's ``_event_time``: any text is a time or a refusal naming it."""
    response = post_events(client, {**BOUNCE, "address": "text@example.com", "time": text})
    assert response.status_code in (200, 400, 422)
    if response.status_code == 422:
        assert "'time'" in response.get_json()["error"]["rejected"][0]["error"]


# --- The mail-events webhook: the shape of the JSON ---------------------------------------


@TRUSTED
@pytest.mark.parametrize(
    "body",
    [
        "[" * 30_000 + "]" * 30_000,
        '{"a":' * 10_000 + "1" + "}" * 10_000,
        json.dumps({**BOUNCE, "address": "x"})[:-1]
        + ', "extra": '
        + "[" * 20_000
        + "]" * 20_000
        + "}",
    ],
    ids=["30000-brackets", "10000-objects", "deep-inside-an-event"],
)
def test_json_nested_too_deeply_is_a_400_not_a_crash(app, client, body):
    """Defence: the input guard of ``security.py`` (``JsonTooDeep``). The finding:
    30,000 brackets made the parser raise RecursionError, which Flask's
    ``get_json(silent=True)`` does not catch (500). It fits under the 64 KiB limit, so it
    is the guard, not the size limit, that answers."""
    assert len(body.encode()) < app.config["MAX_CONTENT_LENGTH"] == 64 * 1024
    response = post_events(client, body, **{"Accept-Language": "en"})
    assert response.status_code == 400
    assert response.get_json() == {
        "error": {
            "code": "json_too_deep",
            "message": "The JSON sent is nested too deeply to be read.",
            "where": "json",
        }
    }
    assert suppressed() == 0


@TRUSTED
@pytest.mark.parametrize(
    ("body", "mentions"),
    [
        ('{"address": ' + "9" * 5_000 + "}", "object"),  # past Python's 4,300 digits
        (
            f'{{"address": {"9" * 4_000}, "event": "bounce", "time": "2025-03-10T08:00:00Z"}}',
            "'address' must be a string",
        ),
        ({**BOUNCE, "time": 1e308}, "'time' must be an ISO 8601 string"),
        (
            '{"address": "a@example.com", "event": "bounce", "time": 1e999}',
            "'time' must be an ISO 8601 string",
        ),
        ({**BOUNCE, "time": 1741593600}, "'time' must be an ISO 8601 string"),
        ({**BOUNCE, "time": ["2025-03-10T08:00:00Z"]}, "'time' must be an ISO 8601 string"),
        ({**BOUNCE, "time": {"iso": "2025-03-10T08:00:00Z"}}, "'time' must be an ISO"),
        ({**BOUNCE, "time": None}, "'time' must be an ISO 8601 string"),
        ({**BOUNCE, "time": "2025-03-10T08:00:00Z" + " " * 100}, "'time' must be an ISO"),
        ({**BOUNCE, "address": 42}, "'address' must be a string"),
        ({**BOUNCE, "address": {"email": "bounce@example.com"}}, "'address' must be a string"),
        ({**BOUNCE, "address": True}, "'address' must be a string"),
        ({**BOUNCE, "event": ["bounce"]}, "'event' must be"),
        ({**BOUNCE, "event": {"bounce": 1}}, "'event' must be"),
        ({**BOUNCE, "event": 1}, "'event' must be"),
        ([BOUNCE, 7], "each event must be a JSON object"),
        ([BOUNCE, [BOUNCE]], "each event must be a JSON object"),
        ("12", "object"),
        ("true", "object"),
    ],
    ids=repr,
)
def test_a_number_or_a_wrong_type_is_refused_by_name_and_nothing_recorded(client, body, mentions):
    """Defence: the webhook's typed checks (``_parse_event``): no ``str()`` of a number
    or a list, no unhashable ``event``; nothing recorded unless every event is good."""
    response = post_events(client, body)
    assert response.status_code == 422
    assert mentions in json.dumps(response.get_json())
    assert suppressed() == 0


@TRUSTED
def test_a_json_body_sent_to_a_form_is_a_415_not_a_crash(client):
    """Defence: ``security.reads_json``. The same class: Flask-WTF read a JSON list or
    number sent to a form as its fields (a 500). A form now refuses JSON; only views
    marked ``reads_json`` read it."""
    from support.web import csrf_token

    token = csrf_token(client)
    for body in (["a", "b"], "just text", 12, {"email": {"a": 1}}, {"email": ["x@y.z"]}):
        response = client.post("/login", json=body, headers={"X-CSRFToken": token})
        assert response.status_code == 415, body
        assert response.is_json and "form" in response.get_json()["error"]["message"]


# --- Imported articles: times at the ends of the calendar, files too deep -----------------


@pytest.mark.parametrize(
    "moment", ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00"]
)
def test_an_article_published_at_the_ends_of_the_calendar_is_refused(app, moment):
    """Defence: ``storable.moment_in_utc`` in ``articles.store._published_at``: such a
    time overflowed when stored (a traceback)."""
    from support.articles import ARTICLE

    with pytest.raises(ArticleError, match=r"article 2: 'published_at' is out of range"):
        import_articles([ARTICLE, {**ARTICLE, "slug": "autre", "published_at": moment}])
    assert db.session.scalar(select(func.count(Article.id))) == 0


@pytest.mark.parametrize(
    ("content", "says"),
    [
        ("[" * 30_000 + "]" * 30_000, "nested too deeply"),
        ("[" + "9" * 5_000 + "]", "not valid JSON"),
    ],
    ids=["30000-brackets", "5000-digits"],
)
def test_an_articles_file_too_deep_or_with_huge_numbers_says_so(runner, tmp_path, content, says):
    """Defence: ``cli.import_command`` catches ``RecursionError`` and every ``ValueError``
    of the JSON parser (a number of 4,300+ digits is one)."""
    path = tmp_path / "articles.json"
    path.write_text(content, encoding="utf-8")
    result = runner.invoke(args=["articles", "import", str(path)])
    assert result.exit_code != 0 and says in result.output
    assert "Traceback" not in result.output
    assert db.session.scalar(select(func.count(Article.id))) == 0
