"""Attacks on the mail the service sends: bombing, bots, typos and throwaway addresses.

Each test attacks the running app through the test client and counts what actually
reaches a real SMTP server (``smtp_server``) or the outbox. Its docstring names the
defence it proves, in the form ``Defence: ...``; ``docs/security.md`` points at these
names. Remove the defence and the test fails.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from html.parser import HTMLParser

import pytest
from support.articles import ARTICLES
from support.web import (
    ADDRESS,
    assert_calm_page,
    csrf_token,
    forms_of,
    in_english,
    post_form,
    rows,
    sign_in,
    text_of,
)

from auth_service.articles.store import import_articles
from auth_service.extensions import limiter
from auth_service.mail.worker import deliver_due
from auth_service.models import LoginAttempt, OutboxMessage

LIMITS_ON = pytest.mark.settings(RATELIMIT_ENABLED=True)
VICTIM = "victim@example.com"


@pytest.fixture(autouse=True)
def no_request_counted_yet(app):
    """Start every test with empty rate-limit counters.

    ``create_app`` gives the process-wide limiter a fresh ``memory://`` storage whenever
    limits are on; resetting it as well keeps the tests independent of that detail.
    """
    if app.config["RATELIMIT_ENABLED"]:
        limiter.reset()


class Clock:
    """The process clock (``time.time``), which the rate limits count windows with."""

    def __init__(self, real):
        self.real = real
        self.offset = 0.0

    def __call__(self) -> float:
        """Seconds since the epoch, as far ahead as the test has moved the clock."""
        return self.real() + self.offset

    def advance(self, seconds: float) -> None:
        """Let ``seconds`` pass at once."""
        self.offset += seconds


@pytest.fixture
def clock(monkeypatch):
    """A clock the test moves forward: an hour passes without waiting an hour."""
    moved = Clock(time.time)
    monkeypatch.setattr(time, "time", moved)
    return moved


def browser_at(app, ip: str):
    """A new browser whose requests come from ``ip``."""
    browser = app.test_client()
    browser.environ_base["REMOTE_ADDR"] = ip
    return browser


def ask(browser, email: str, **request):
    """Post the sign-up-or-sign-in form from ``browser`` with the token its page gives."""
    data = {"email": email, "next": "/", "csrf_token": csrf_token(browser)}
    return browser.post("/login", data=data, **request)


def without_csrf(page: str) -> str:
    """A page with its per-session CSRF tokens blanked out."""
    return re.sub(r'name="csrf_token" value="[^"]+"', "CSRF", page)


def delivered(smtp_server) -> list[str]:
    """Deliver every queued mail; the recipients the SMTP server has accepted so far."""
    deliver_due()
    return [recipient for envelope in smtp_server.messages for recipient in envelope.rcpt_tos]


# --- Mail-bombing one address --------------------------------------------------------


@LIMITS_ON
def test_one_address_asked_from_many_ips_gets_one_mail_a_minute(app, smtp_server):
    """Defence: the per-address limit (1 link a minute from one network), keyed on the
    normalised inbox: another IP of the network, capitals or a "+tag" do not make a new
    counter."""
    variants = [
        VICTIM,
        "Victim@Example.COM",
        "victim+news@example.com",
        "VICTIM+x@EXAMPLE.com",
        " victim@example.com ",
    ]
    statuses = [
        ask(browser_at(app, f"203.0.113.{n}"), typed).status_code
        for n, typed in enumerate(variants, start=1)
    ]
    assert statuses == [303, 429, 429, 429, 429]
    assert delivered(smtp_server) == [VICTIM]


@LIMITS_ON
@pytest.mark.parametrize(
    "spelling", ["vic.tim@gmail.com", "v.i.c.t.i.m@gmail.com", "victim@googlemail.com"]
)
def test_gmail_spellings_of_one_inbox_share_the_address_limit(app, smtp_server, spelling):
    """Defence: the per-address limit keyed on the inbox: Gmail ignores dots in the local
    part and also delivers @googlemail.com, so each spelling must not get a new counter."""
    assert ask(browser_at(app, "203.0.113.1"), "victim@gmail.com").status_code == 303
    assert ask(browser_at(app, "203.0.113.2"), spelling).status_code == 429
    assert delivered(smtp_server) == ["victim@gmail.com"]


@LIMITS_ON
def test_one_address_gets_at_most_five_mails_an_hour_and_ten_a_day(app, smtp_server, clock):
    """Defence: the per-address limits of 5 links an hour and 10 a day from one network
    (the default LOGIN_LIMIT_PER_ADDRESS_AND_NETWORK), whatever the IP in it; the clock
    is moved, not waited for."""
    assert app.config["LOGIN_LIMIT_PER_ADDRESS_AND_NETWORK"] == "1 per minute;5 per hour;10 per day"
    ips = (f"198.51.100.{n}" for n in range(1, 100))

    def every_minute(tries: int) -> list[int]:
        """Ask ``tries`` times, a little over a minute apart, each from a new IP."""
        statuses = []
        for _ in range(tries):
            statuses.append(ask(browser_at(app, next(ips)), VICTIM).status_code)
            clock.advance(61)
        return statuses

    assert every_minute(6) == [303] * 5 + [429]  # the sixth within the hour
    clock.advance(3601 - 6 * 61)
    assert every_minute(6) == [303] * 5 + [429]  # a new hour: five more
    clock.advance(2 * 3600 + 5 - clock.offset)
    assert every_minute(1) == [429]  # a new hour, but ten already today
    assert len(delivered(smtp_server)) == 10
    clock.advance(86_400 + 60 - clock.offset)
    assert every_minute(1) == [303]  # the next day
    assert len(delivered(smtp_server)) == 11


# --- Locking a reader out ------------------------------------------------------------


def network(n: int) -> str:
    """An IP in the ``n``-th of many distinct /24 networks."""
    return f"10.{n // 250}.{n % 250}.7"


READER_AT_HOME = "192.0.2.10"


@LIMITS_ON
def test_strangers_asking_from_elsewhere_do_not_spend_the_readers_allowance(
    app, smtp_server, clock
):
    """Defence: the reader's allowance is counted per inbox *and* requesting network.
    Five strangers on five networks ask for the reader's inbox (capitals, "+tags"),
    which used to spend its 5 links an hour; the reader at home still gets a link."""
    for n, typed in enumerate(
        [VICTIM, "Victim@Example.com", "victim+a@example.com", "VICTIM+b@example.com", VICTIM]
    ):
        assert ask(browser_at(app, network(n)), typed).status_code == 303
        clock.advance(61)
    assert ask(browser_at(app, READER_AT_HOME), VICTIM).status_code == 303
    assert len(delivered(smtp_server)) == 6


@LIMITS_ON
def test_strangers_everywhere_mail_one_inbox_at_most_thirty_times_a_day(app, smtp_server, clock):
    """Defence: above the per-network allowance, a ceiling for the inbox from every
    network together (LOGIN_LIMIT_PER_ADDRESS: 3 a minute, 15 an hour, 30 a day) bounds
    mail bombing from many networks."""
    assert app.config["LOGIN_LIMIT_PER_ADDRESS"] == "3 per minute;15 per hour;30 per day"
    burst = [ask(browser_at(app, network(n)), VICTIM).status_code for n in range(4)]
    assert burst == [303, 303, 303, 429]  # three a minute
    statuses = []
    for n in range(4, 44):
        clock.advance(600)  # six an hour: only the daily ceiling can stop them
        statuses.append(ask(browser_at(app, network(n)), VICTIM).status_code)
    assert statuses == [303] * 27 + [429] * 13
    assert len(delivered(smtp_server)) == 30


@LIMITS_ON
def test_a_browser_that_signed_in_before_is_not_locked_out_by_strangers(app, client, clock):
    """Defence: once strangers have spent the inbox's daily ceiling, a new browser is
    refused for the day, but a browser that signed in with the address before (the
    signed known-device cookie) still gets its link: strangers cannot lock a reader out
    of their own browsers."""
    client.environ_base["REMOTE_ADDR"] = READER_AT_HOME
    sign_in(app, client, VICTIM)
    post_form(client, "/logout", {}, page="/account")
    for n in range(31):
        clock.advance(600)
        ask(browser_at(app, network(n)), VICTIM)
    clock.advance(61)
    assert ask(browser_at(app, READER_AT_HOME), VICTIM).status_code == 429
    clock.advance(61)  # that refusal spent the home network's minute
    assert ask(client, VICTIM).status_code == 303
    assert ask(client, "other-inbox@example.com").status_code == 303  # another inbox


@LIMITS_ON
def test_a_forged_known_device_cookie_opens_no_way_past_the_ceiling(app, clock):
    """Defence: the known-device cookie is signed; a made-up one counts for nothing."""
    for n in range(30):
        clock.advance(600)
        ask(browser_at(app, network(n)), VICTIM)
    clock.advance(61)
    forger = browser_at(app, network(99))
    forger.set_cookie(app.config["DEVICE_COOKIE_NAME"], '["anything"].forged', path="/")
    assert ask(forger, VICTIM).status_code == 429


@LIMITS_ON
def test_signing_in_with_a_plus_address_vouches_for_that_address_only(app, client, clock):
    """Defence: the known-device cookie names exact addresses: where "+tags" are other
    people's mailboxes, the owner of victim+x@ cannot skip victim@'s ceiling."""
    client.environ_base["REMOTE_ADDR"] = READER_AT_HOME
    sign_in(app, client, "victim+x@example.com")
    post_form(client, "/logout", {}, page="/account")
    for n in range(31):
        clock.advance(600)
        ask(browser_at(app, network(n)), VICTIM)
    clock.advance(61)
    assert ask(client, VICTIM).status_code == 429
    clock.advance(61)
    assert ask(client, "victim+x@example.com").status_code == 303


@LIMITS_ON
def test_a_browser_holding_an_open_attempt_gets_its_send_again(app, smtp_server, clock):
    """Defence: "send again" from the browser that holds an open attempt for the inbox
    is not held back by the ceiling strangers spent; it is counted per run of attempts
    (LOGIN_LIMIT_RESENDS_PER_CHAIN: 5 a day), so a copied attempt cookie cannot bomb the
    inbox either, even from a new network each time."""
    assert app.config["LOGIN_LIMIT_RESENDS_PER_CHAIN"] == "5 per day"
    reader = browser_at(app, READER_AT_HOME)
    assert ask(reader, VICTIM).status_code == 303
    for n in range(14):  # three a minute: the hour's 15 are spent in five minutes
        clock.advance(21)
        assert ask(browser_at(app, network(n)), VICTIM).status_code == 303
    clock.advance(21)
    assert ask(browser_at(app, network(50)), VICTIM).status_code == 429  # ceiling spent
    statuses = []
    for n in range(7):
        clock.advance(61)  # within the attempts' 15 minutes
        reader.environ_base["REMOTE_ADDR"] = network(100 + n)  # as a copied cookie would
        statuses.append(ask(reader, "Victim@Example.com").status_code)
    assert statuses == [303] * 5 + [429] * 2
    assert len(delivered(smtp_server)) == 1 + 14 + 5


@LIMITS_ON
def test_strangers_cannot_spend_a_readers_send_again(app, smtp_server, clock):
    """Defence: each run of "send again" has its own allowance: a stranger who spends
    the allowance of their own run, from many networks, leaves the reader's whole."""
    reader = browser_at(app, READER_AT_HOME)
    assert ask(reader, VICTIM).status_code == 303
    stranger = browser_at(app, network(0))
    assert ask(stranger, VICTIM).status_code == 303
    statuses = []
    for n in range(1, 8):
        clock.advance(61)
        stranger.environ_base["REMOTE_ADDR"] = network(n)
        statuses.append(ask(stranger, VICTIM).status_code)
    assert statuses == [303] * 5 + [429] * 2
    clock.advance(61)
    assert ask(reader, VICTIM).status_code == 303
    assert len(delivered(smtp_server)) == 2 + 5 + 1


@LIMITS_ON
def test_over_the_hourly_limit_the_wait_is_told_in_minutes(app, clock):
    """Defence: the 429 answer of the per-address limit gives Retry-After and the same
    wait in words, counted to the end of the window that was hit."""
    for n in range(5):
        assert ask(browser_at(app, f"198.51.100.{n}"), VICTIM).status_code == 303
        clock.advance(61)
    response = ask(in_english(browser_at(app, "198.51.100.9")), VICTIM)
    assert response.status_code == 429
    seconds = int(response.headers["Retry-After"])
    assert 3600 - 5 * 61 - 5 <= seconds <= 3600 - 5 * 61
    minutes = re.search(r"Wait (\d+) minutes, then try again", text_of(response))
    assert minutes and int(minutes.group(1)) in (-(-seconds // 60), -(-(seconds + 1) // 60))


@LIMITS_ON
@pytest.mark.parametrize(
    ("how", "says"),
    [
        ({}, "Patientez 1 minute, puis réessayez."),
        ({"query_string": {"lang": "en"}}, "Wait 1 minute, then try again."),
        ({"headers": {"Accept-Language": "en-GB,en;q=0.9"}}, "Wait 1 minute, then try again."),
    ],
    ids=["french-by-default", "lang-parameter", "accept-language"],
)
def test_over_the_address_limit_the_page_says_when_to_try_again(app, how, says):
    """Defence: a limit answers 429 with a numeric Retry-After and a page in the reader's
    language that says when to try again, and queues no mail."""
    ask(browser_at(app, "198.51.100.1"), VICTIM)
    response = ask(browser_at(app, "198.51.100.2"), VICTIM, **how)
    assert_calm_page(response, 429)
    assert response.headers["Retry-After"].isdigit()
    assert 0 < int(response.headers["Retry-After"]) <= 60
    assert says in text_of(response)
    assert len(rows(OutboxMessage)) == 1 and len(rows(LoginAttempt)) == 1


@LIMITS_ON
def test_over_the_limit_nothing_tells_whether_the_address_has_an_account(app, client):
    """Defence: the limit is counted and answered the same way for every address, so a
    429 cannot be used to find out who has an account."""
    client.environ_base["REMOTE_ADDR"] = "198.51.100.9"
    sign_in(app, client, "known@example.com")  # an account, which used its minute
    ask(browser_at(app, "198.51.100.1"), "new@example.com")
    answers = [
        ask(browser_at(app, f"198.51.100.{n}"), address)
        for n, address in ((2, "known@example.com"), (3, "new@example.com"))
    ]
    assert [answer.status_code for answer in answers] == [429, 429]
    assert [sorted(answer.headers.keys()) for answer in answers][0] == sorted(
        answers[1].headers.keys()
    )
    # The wait may differ by a minute: each address's window started at its own time.
    pages = [
        re.sub(r"\d+ minutes?", "N minutes", without_csrf(answer.get_data(as_text=True)))
        for answer in answers
    ]
    assert pages[0] == pages[1]


@LIMITS_ON
def test_probes_that_send_no_mail_learn_nothing_about_an_addresses_last_link(app):
    """Defence: only a request that would mail counts against (or is checked by) the
    address limit, and no X-RateLimit-* header says when a window resets: a honeypot or
    typo probe of an address that just got a link looks like a probe of any other."""
    assert ask(browser_at(app, "198.51.100.1"), VICTIM).status_code == 303
    honeypot = browser_at(app, "198.51.100.2")
    data = {"email": VICTIM, "website": "x", "csrf_token": csrf_token(honeypot)}
    assert honeypot.post("/login", data=data).status_code == 303
    typo = ask(browser_at(app, "198.51.100.3"), "victim@gmial.com")
    assert typo.status_code == 200
    for response in (typo, ask(browser_at(app, "198.51.100.4"), VICTIM)):
        names = [name.lower() for name in response.headers.keys()]
        assert not [name for name in names if name.startswith("x-ratelimit")]
    assert len(rows(OutboxMessage)) == 1


@LIMITS_ON
def test_over_the_daily_limit_the_wait_is_told_in_hours(app, clock):
    """Defence: the 429 page of the daily limit says the wait in hours, not in
    thousands of minutes, and Retry-After agrees with it."""
    for n in range(10):
        assert ask(browser_at(app, f"198.51.100.{n}"), VICTIM).status_code == 303
        clock.advance(3601 if n % 5 == 4 else 61)
    response = ask(in_english(browser_at(app, "198.51.100.99")), VICTIM)
    assert response.status_code == 429
    hours = -(-int(response.headers["Retry-After"]) // 3600)
    assert f"Wait {hours} hours, then try again." in text_of(response)


@pytest.mark.settings(RATELIMIT_ENABLED=False, MAIL_HOURLY_CEILING=1)
def test_turning_limits_off_turns_the_ceiling_off_too(app):
    """Defence: none; RATELIMIT_ENABLED=false is the one switch for load benchmarks."""
    for n in range(3):
        assert ask(browser_at(app, "198.51.100.1"), f"p{n}@example.com").status_code == 303


# --- Per-IP limits, and proxies ------------------------------------------


@LIMITS_ON
def test_many_addresses_from_one_ip_get_thirty_mails_in_five_minutes(app, smtp_server):
    """Defence: the per-IP limit on POST /login (30 in 5 minutes); other IPs go on."""
    bot = browser_at(app, "203.0.113.7")
    token = csrf_token(bot)
    statuses = [
        bot.post(
            "/login", data={"email": f"target{n}@example.com", "csrf_token": token}
        ).status_code
        for n in range(31)
    ]
    assert statuses == [303] * 30 + [429]
    assert ask(browser_at(app, "203.0.113.8"), "someone@example.com").status_code == 303
    recipients = delivered(smtp_server)
    assert len(recipients) == 31 and "target30@example.com" not in recipients


@LIMITS_ON
def test_link_and_code_checks_share_thirty_tries_per_ip(app, reader, client):
    """Defence: the per-IP limit on link and code checks (30 in 5 minutes, shared by
    GET and POST /login/verify and POST /login/code); other IPs go on."""
    reader.ask_for_link(VICTIM)
    mail = reader.last_mail()
    prober = browser_at(app, "203.0.113.9")
    token = csrf_token(prober)
    statuses = []
    for n in range(10):
        statuses.append(prober.get("/login/verify", query_string={"token": f"x{n}"}).status_code)
        statuses.append(
            prober.post("/login/verify", data={"token": f"x{n}", "csrf_token": token}).status_code
        )
        statuses.append(
            prober.post("/login/code", data={"code": f"{n:06d}", "csrf_token": token}).status_code
        )
    assert 429 not in statuses and len(statuses) == 30
    assert prober.get(f"/login/verify?token={mail.token}").status_code == 429
    assert (
        prober.post("/login/code", data={"code": mail.code, "csrf_token": token}).status_code == 429
    )
    assert rows(LoginAttempt)[0].used_at is None
    assert client.get(f"/login/verify?token={mail.token}").status_code == 303


@LIMITS_ON
def test_forged_forwarded_for_does_not_dodge_the_ip_limit(app):
    """Defence: without PROXY_FIX_X_FOR, X-Forwarded-For is ignored and the socket's
    address is counted, so a bot cannot claim a new IP with each request."""
    assert not app.config["PROXY_FIX_X_FOR"]
    bot = browser_at(app, "203.0.113.7")
    token = csrf_token(bot)
    statuses = [
        bot.post(
            "/login",
            data={"email": f"t{n}@example.com", "csrf_token": token},
            headers={"X-Forwarded-For": f"198.51.100.{n}"},
        ).status_code
        for n in range(31)
    ]
    assert statuses == [303] * 30 + [429]
    assert len(rows(OutboxMessage)) == 30


@LIMITS_ON
@pytest.mark.settings(PROXY_FIX_X_FOR=1)
def test_behind_a_trusted_proxy_each_client_ip_has_its_own_counter(app):
    """Defence: with PROXY_FIX_X_FOR=1, ProxyFix takes the client IP that the proxy
    appended to X-Forwarded-For; what the client forged before it is ignored."""
    proxy = browser_at(app, "10.0.0.1")
    token = csrf_token(proxy)

    def post(n: int, forwarded_for: str) -> int:
        data = {"email": f"t{n}@example.com", "csrf_token": token}
        return proxy.post(
            "/login", data=data, headers={"X-Forwarded-For": forwarded_for}
        ).status_code

    first = [post(n, f"192.0.2.{n}, 198.51.100.1") for n in range(31)]
    assert first == [303] * 30 + [429]
    assert post(31, "198.51.100.2") == 303


@LIMITS_ON
@pytest.mark.settings(MAIL_HOURLY_CEILING=3)
def test_service_wide_ceiling_refuses_mail_and_logs_critical(app, smtp_server, caplog):
    """Defence: MAIL_HOURLY_CEILING, a cap on sign-in mail queued per hour by the whole
    service, against a bombing spread over many addresses and IPs; logged CRITICAL."""
    answers = [ask(browser_at(app, f"203.0.113.{n}"), f"person{n}@example.com") for n in range(4)]
    assert [answer.status_code for answer in answers] == [303, 303, 303, 429]
    assert_calm_page(answers[-1], 429)
    assert int(answers[-1].headers["Retry-After"]) > 0
    assert delivered(smtp_server) == [f"person{n}@example.com" for n in range(3)]
    critical = [r.getMessage() for r in caplog.records if r.levelno == logging.CRITICAL]
    assert critical and "MAIL_HOURLY_CEILING=3" in critical[0]


# --- The honeypot ---------------------------------------------------------------------


def test_filled_honeypot_gets_the_usual_answer_and_no_mail(app, client):
    """Defence: the honeypot field ``website``: a bot that fills it is told "check your
    email" for the address it typed, exactly as a person is, and nothing is sent."""
    response = post_form(client, "/login", {"email": ADDRESS, "website": "http://spam.example"})
    assert response.status_code == 303 and response.location == "/login/sent"
    decoy = client.get("/login/sent")
    assert_calm_page(decoy, 200)
    assert f'<strong class="address">{ADDRESS}</strong>' in decoy.get_data(as_text=True)
    assert rows(OutboxMessage) == [] and rows(LoginAttempt) == []
    person = app.test_client()
    post_form(person, "/login", {"email": ADDRESS, "website": ""})
    real = person.get("/login/sent")
    assert without_csrf(real.get_data(as_text=True)) == without_csrf(decoy.get_data(as_text=True))
    assert len(rows(OutboxMessage)) == 1


class _Surroundings(HTMLParser):
    """The attributes of an input, and of every element that contains it."""

    VOID = {"input", "br", "img", "meta", "link", "hr", "source", "wbr"}

    def __init__(self, name: str):
        super().__init__(convert_charrefs=True)
        self.name, self.open, self.found = name, [], None

    def handle_starttag(self, tag, attrs):
        """Record the input when it comes; keep track of what is open around it."""
        attrs = {key: value or "" for key, value in attrs}
        if tag == "input" and attrs.get("name") == self.name:
            self.found = (attrs, [around for _, around in self.open])
        if tag not in self.VOID:
            self.open.append((tag, attrs))

    def handle_endtag(self, tag):
        """Close up to the matching element."""
        while self.open and self.open.pop()[0] != tag:
            pass


@pytest.mark.parametrize("path", ["/login", "/articles/train-de-nuit"])
def test_honeypot_is_out_of_reach_of_people(app, client, path):
    """Defence: the honeypot is off screen, out of the tab order (tabindex=-1), hidden
    from screen readers (an aria-hidden container) and never autofilled."""
    import_articles(ARTICLES)
    finder = _Surroundings("website")
    finder.feed(client.get(path).get_data(as_text=True))
    assert finder.found, f"no honeypot on {path}"
    field, containers = finder.found
    assert field["tabindex"] == "-1" and field["autocomplete"] == "off"
    assert any(around.get("aria-hidden") == "true" for around in containers)
    classes = {name for around in containers for name in around.get("class", "").split()}
    with client.get("/static/site.css") as stylesheet:
        css = stylesheet.get_data(as_text=True)
    assert any(
        re.search(rf"\.{re.escape(name)}\s*\{{[^}}]*(left:\s*-\d{{3,}}px|display:\s*none)", css)
        for name in classes
    )


# --- Typos of common domains ----------------------------------------------------------


def _typo_buttons(response) -> dict:
    """The two forms of the typo hint, by the address each one sends."""
    return {
        form.field("email")["value"]: form
        for form in forms_of(response, "/login")
        if form.field("as_typed")
    }


@pytest.mark.parametrize(
    ("lang", "says"),
    [
        ("fr", "Vouliez-vous dire jean@gmail.com\u202f?"),
        ("en", "Did you mean jean@gmail.com?"),
    ],
)
def test_typo_of_a_common_domain_offers_a_correction_and_sends_nothing(client, lang, says):
    """Defence: the typo hint for common domains: "jean@gmial.com" comes back with
    "did you mean jean@gmail.com?" and two buttons, and nothing is sent."""
    client.set_cookie("lang", lang)
    response = post_form(client, "/login", {"email": "jean@gmial.com"})
    assert_calm_page(response, 200)
    assert says in text_of(response)
    buttons = _typo_buttons(response)
    assert set(buttons) == {"jean@gmail.com", "jean@gmial.com"}
    assert all(
        form.method == "post" and form.field("as_typed")["value"] == "y"
        for form in buttons.values()
    )
    assert rows(OutboxMessage) == [] and rows(LoginAttempt) == []


@pytest.mark.parametrize("choice", ["jean@hotmail.fr", "jean@hotmial.fr"])
def test_either_typo_button_sends_exactly_one_mail_there(client, choice):
    """Defence: the typo hint's buttons: the reader's choice, suggestion or address as
    typed, gets one mail and is not questioned again."""
    page = post_form(client, "/login", {"email": "jean@hotmial.fr", "next": "/articles/x"})
    assert rows(OutboxMessage) == []
    form = _typo_buttons(page)[choice]
    response = client.post(
        "/login",
        data={attrs["name"]: attrs.get("value", "") for attrs in form.inputs if attrs.get("name")},
    )
    assert response.status_code == 303
    assert [mail.to_address for mail in rows(OutboxMessage)] == [choice]
    assert rows(LoginAttempt)[0].next_url == "/articles/x"


@pytest.mark.settings(BLOCKED_DOMAINS=["gmial.com"])
def test_typo_hint_comes_before_the_block_list(client):
    """Defence: the typo check runs before the block lists (which hold typo domains), and
    the address as typed still meets them: refused, nothing sent."""
    in_english(client)
    page = post_form(client, "/login", {"email": "jean@gmial.com"})
    assert page.status_code == 200 and "Did you mean jean@gmail.com?" in text_of(page)
    form = _typo_buttons(page)["jean@gmial.com"]
    response = client.post(
        "/login",
        data={attrs["name"]: attrs.get("value", "") for attrs in form.inputs if attrs.get("name")},
    )
    assert_calm_page(response, 422)
    assert "cannot be used to sign up" in text_of(response)
    assert rows(OutboxMessage) == []


# --- Blocked and disposable domains --------------------------------------------------


@pytest.mark.settings(BLOCKED_DOMAINS=["spam.example"])
@pytest.mark.parametrize("address", ["x@spam.example", "x@mail.spam.example", "X@SPAM.Example"])
def test_blocked_domain_and_its_subdomains_are_refused(client, address):
    """Defence: BLOCKED_DOMAINS, subdomains included: 422 with a clear message, no mail."""
    response = post_form(in_english(client), "/login", {"email": address})
    assert_calm_page(response, 422)
    assert "This address cannot be used to sign up here." in text_of(response)
    assert rows(OutboxMessage) == [] and rows(LoginAttempt) == []


@pytest.mark.settings(BLOCKED_DOMAINS=["spam.example"])
def test_a_domain_that_only_ends_like_a_blocked_one_is_served(client):
    """Defence: BLOCKED_DOMAINS matches whole domain labels, so it blocks no one else."""
    assert post_form(client, "/login", {"email": "x@notspam.example"}).status_code == 303
    assert len(rows(OutboxMessage)) == 1


@pytest.mark.parametrize(
    ("lang", "says"),
    [
        ("fr", "Les adresses jetables ne permettent pas de s’inscrire."),
        ("en", "Disposable addresses cannot be used to sign up."),
    ],
)
@pytest.mark.parametrize("address", ["x@mailinator.com", "x@eu.mailinator.com"])
def test_disposable_address_is_refused(client, address, lang, says):
    """Defence: the maintained disposable-address list (disposable-email-domains)."""
    client.set_cookie("lang", lang)
    response = post_form(client, "/login", {"email": address})
    assert_calm_page(response, 422)
    assert says in text_of(response)
    assert rows(OutboxMessage) == [] and rows(LoginAttempt) == []


@pytest.mark.settings(BLOCK_DISPOSABLE_DOMAINS=False)
def test_disposable_list_can_be_turned_off(client):
    """Defence: BLOCK_DISPOSABLE_DOMAINS=False is what lets a disposable address in."""
    assert post_form(client, "/login", {"email": "x@mailinator.com"}).status_code == 303
    assert [mail.to_address for mail in rows(OutboxMessage)] == ["x@mailinator.com"]


@LIMITS_ON
def test_simultaneous_requests_for_one_address_get_one_mail(app, smtp_server):
    """Defence: the per-address limit is checked and counted in one step before the view
    runs, so a burst of simultaneous requests cannot all slip past the check."""
    browsers = [browser_at(app, f"203.0.113.{n}") for n in range(8)]
    tokens = [csrf_token(browser) for browser in browsers]
    start, statuses = threading.Barrier(len(browsers)), []

    def post(browser, token):
        start.wait()
        data = {"email": VICTIM, "next": "/", "csrf_token": token}
        statuses.append(browser.post("/login", data=data).status_code)

    threads = [
        threading.Thread(target=post, args=pair) for pair in zip(browsers, tokens, strict=True)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [303] + [429] * 7
    assert delivered(smtp_server) == [VICTIM]
