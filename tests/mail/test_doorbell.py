"""The SQLite worker's doorbell (auth_service/mail/doorbell.py), on real sockets."""

import threading

from auth_service.mail.doorbell import Doorbell, address_of, ring


def test_a_ring_wakes_the_worker_bound_to_that_database_only(tmp_path):
    ours, other = str(tmp_path / "ours.sqlite3"), str(tmp_path / "other.sqlite3")
    bell = Doorbell(ours)
    try:
        assert bell.bound
        assert not bell.wait(0.05)  # nobody rang

        ring(other)
        assert not bell.wait(0.05)

        ring(ours)
        ring(ours)
        assert bell.wait(5)
        assert not bell.wait(0.05), "two rings before one wait are answered by one pass"
    finally:
        bell.close()


def test_a_ring_from_another_thread_ends_a_long_wait(tmp_path):
    database = str(tmp_path / "db.sqlite3")
    bell = Doorbell(database)
    woken = []
    waiter = threading.Thread(target=lambda: woken.append(bell.wait(60)))
    try:
        waiter.start()
        ring(database)
        waiter.join(10)
        assert not waiter.is_alive() and woken == [True]
    finally:
        bell.close()


def test_a_second_worker_on_one_database_is_not_bound_and_a_closed_bell_frees_the_name(
    tmp_path,
):
    database = str(tmp_path / "db.sqlite3")
    first = Doorbell(database)
    second = Doorbell(database)
    try:
        assert first.bound and not second.bound
        assert not second.wait(0.01)  # it only sleeps: its worker polls
        first.close()
        third = Doorbell(database)
        assert third.bound
        third.close()
    finally:
        first.close()
        second.close()


def test_ringing_with_no_worker_listening_does_nothing(tmp_path):
    ring(str(tmp_path / "nobody.sqlite3"))  # no error, no file left behind
    assert list(tmp_path.iterdir()) == []


def test_the_name_is_the_same_for_two_spellings_of_one_file(tmp_path):
    database = tmp_path / "db.sqlite3"
    assert address_of(str(database)) == address_of(str(tmp_path / "." / "db.sqlite3"))
    assert address_of(str(database)).startswith("\0")
