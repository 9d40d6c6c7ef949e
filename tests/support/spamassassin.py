"""Scoring a message with Debian's SpamAssassin, offline and the same on every run.

``spamassassin`` (Debian package ``spamassassin``; ``tests/run.sh`` installs it) runs
once per message with:

- local tests only (``-L`` and ``dns_available no``): no DNS blocklist, no URIBL, no
  Razor, Pyzor or DCC, and no DKIM, SPF or DMARC check either (each needs DNS; the
  DKIM plugin says "signature verification disabled, DNS resolving not available"
  and moves on, it never waits on a lookup). So the score set is 0: the offline one;
- the rules shipped by the package (``/usr/share/spamassassin``), never those an
  ``sa-update`` may have put under ``/var/lib/spamassassin``, nor the machine's own
  ``/etc/spamassassin/local.cf``: the site configuration is a temporary folder holding
  the package's ``.pre`` files (which plugins load) and our settings;
- no Bayes, no learning, no auto-welcomelist or reputation, no user preferences: HOME
  is a temporary folder too, so nothing is read from or written to anyone's state.

Anything unexpected raises :class:`SpamAssassinError`: no binary, an exit status, a
line on standard error other than the debug lines asked for (a setting SpamAssassin
did not understand is only said there), a run that did not read our settings or did not
choose score set 0, an answer without its score. A gate that cannot score must fail,
not pass.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from email import policy
from email.parser import BytesParser
from pathlib import Path

BINARY = "spamassassin"
RULES = Path("/usr/share/spamassassin")  # the package's rules
PLUGINS = Path("/etc/spamassassin")  # the package's .pre files: which plugins load
# Rule2XSBody runs rules sa-compile compiled from whatever rules were there at the
# time; the plain Perl rules give the same hits from the rules above alone.
LEFT_OUT_PRE = {"sa-compile.pre"}
TIMEOUT = 120  # seconds; a run takes one or two
GATE_HEADER = "X-Spam-Gate"
# A debug line on standard error: "Dec  2 01:30:57.935 [10092] dbg: config: ...".
DEBUG_LINE = re.compile(r"^[^\[]*\[[0-9]+\] dbg: ")
SETTINGS = f"""\
# Offline: no network test at all (``-L`` says so too).
dns_available no
skip_rbl_checks 1
# Nothing learnt, nothing remembered between runs.
use_bayes 0
bayes_auto_learn 0
ifplugin Mail::SpamAssassin::Plugin::AWL
use_auto_welcomelist 0
endif
ifplugin Mail::SpamAssassin::Plugin::TxRep
use_txrep 0
endif
ifplugin Mail::SpamAssassin::Plugin::Razor2
use_razor2 0
endif
ifplugin Mail::SpamAssassin::Plugin::Pyzor
use_pyzor 0
endif
ifplugin Mail::SpamAssassin::Plugin::DCC
use_dcc 0
endif
# The message is only looked at: headers added, never wrapped in a report.
report_safe 0
# Every rule that hit with its score, on one header we read back.
add_header all {GATE_HEADER.removeprefix("X-Spam-")} _TESTSSCORES(,)_
"""


class SpamAssassinError(RuntimeError):
    """SpamAssassin is missing, failed, or answered something we cannot read."""


@dataclass(frozen=True)
class Verdict:
    """What SpamAssassin makes of one message: its score and the rules that hit."""

    score: float
    rules: dict[str, float]  # rule name -> its score, in the order SpamAssassin lists them
    checker: str  # "SpamAssassin 4.0.1 (2024-03-25)": which version scored

    def describe(self) -> str:
        """The score and each rule, one per line, highest first."""
        lines = [f"score {self.score:.3f} ({self.checker}, offline rules)"]
        for name, points in sorted(self.rules.items(), key=lambda item: -item[1]):
            lines.append(f"  {points:7.3f} {name}")
        return "\n".join(lines)


def score(message: bytes) -> Verdict:
    """Score ``message`` (the bytes as sent) with the offline rules."""
    binary = _binary()
    pre_files = [p for p in PLUGINS.glob("*.pre") if p.name not in LEFT_OUT_PRE]
    if not pre_files or not RULES.is_dir():
        raise SpamAssassinError(
            f"SpamAssassin's files are missing ({PLUGINS}/*.pre, {RULES}): reinstall the "
            "Debian package spamassassin."
        )
    with tempfile.TemporaryDirectory(prefix="spamassassin-") as folder:
        home = Path(folder)
        site = home / "site"
        site.mkdir()
        for pre in pre_files:
            shutil.copy(pre, site / pre.name)
        settings = site / "local.cf"
        settings.write_text(SETTINGS)
        prefs = home / "user_prefs"
        prefs.write_text("")
        command = [
            binary,
            "--local",
            "--nocreate-prefs",
            f"--configpath={RULES}",
            f"--siteconfigpath={site}",
            f"--prefspath={prefs}",
            # SpamAssassin says which files it read and which score set it chose only
            # in its debug lines, and that a setting was not understood only at the
            # "info" level: both are checked below.
            "--debug=config",
        ]
        environment = {
            "HOME": str(home),  # ~/.spamassassin, if anything wants it, is thrown away
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "LANG": "C.UTF-8",
            "TZ": "UTC",
        }
        try:
            result = subprocess.run(
                command, input=message, capture_output=True, env=environment, timeout=TIMEOUT
            )
        except subprocess.TimeoutExpired:
            raise SpamAssassinError(f"spamassassin took more than {TIMEOUT} s") from None
        _check_run(command, result, settings)
    return _verdict(result.stdout)


def _binary() -> str:
    found = shutil.which(BINARY)
    if found is None:
        raise SpamAssassinError(
            "spamassassin is not installed: apt-get install spamassassin (tests/run.sh "
            "does it on Debian)."
        )
    return found


def _check_run(command: list[str], result: subprocess.CompletedProcess, settings: Path):
    """Raise unless SpamAssassin ran cleanly with our settings and the offline scores."""
    lines = result.stderr.decode("utf-8", "replace").splitlines()
    debug = [line for line in lines if DEBUG_LINE.match(line)]
    problems = [line for line in lines if line.strip() and not DEBUG_LINE.match(line)]
    if result.returncode != 0 or problems:
        raise SpamAssassinError(
            f"{' '.join(command)} exited with {result.returncode}:\n"
            + ("\n".join(problems) or "(no message)")
        )
    for wanted in (f"config: read file {settings}", "config: score set 0 chosen."):
        if not any(line.endswith(wanted) for line in debug):
            raise SpamAssassinError(
                f"SpamAssassin did not say {wanted!r}: not the offline setup this gate "
                f"expects.\n{' '.join(command)}"
            )


def _verdict(output: bytes) -> Verdict:
    """The rules of the gate's header of SpamAssassin's output, and their sum."""
    headers = BytesParser(policy=policy.compat32).parsebytes(output, headersonly=True)
    values = headers.get_all(GATE_HEADER) or []
    if len(values) != 1:
        raise SpamAssassinError(
            f"SpamAssassin's answer has {len(values)} {GATE_HEADER} headers, not one:\n"
            + output[:2000].decode("utf-8", "replace")
        )
    value = re.sub(r"\s+", "", str(values[0]))  # unfolded: the list holds no space
    rules = {}
    if value != "none":
        for item in value.split(","):
            name, equals, points = item.partition("=")
            if not equals or not re.fullmatch(r"[A-Za-z0-9_]+", name):
                raise SpamAssassinError(f"cannot read {item!r} in {GATE_HEADER}: {value}")
            rules[name] = float(points)
    total = round(sum(rules.values()), 3)
    # SpamAssassin's own total, to one decimal, must agree with the sum of the rules.
    status = re.search(r"score=(-?[0-9.]+)", str(headers.get("X-Spam-Status", "")))
    if status is None or abs(float(status.group(1)) - total) > 0.051:
        raise SpamAssassinError(
            f"X-Spam-Status {headers.get('X-Spam-Status')!r} does not add up to the rules "
            f"of {GATE_HEADER} ({total}): {value}"
        )
    checker = str(headers.get("X-Spam-Checker-Version", "SpamAssassin")).split(" on ")[0]
    return Verdict(total, rules, " ".join(checker.split()))
