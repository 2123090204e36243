"""Logins cannot starve the server: hashing runs apart from the API's threads, and a flood of
unknown names from one address is rate limited like guesses at one name."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import httpx

from farm import accounts
from farm.errors import TooManyAttempts
from tests.services import wait_for

FLOOD = 60  #: more logins at once than the server has threads for its synchronous routes (40)


def test_a_flood_of_logins_leaves_the_api_answering(api, tokens, monkeypatch):
    started, release = [], threading.Event()
    real = accounts.verify_password

    def slow_verify(password: str, stored: str) -> bool:  # every hash thread held until released
        started.append(password)
        release.wait(120)
        return real(password, stored)

    monkeypatch.setattr(accounts, "verify_password", slow_verify)

    def login(i: int) -> int:
        with httpx.Client(base_url=api, timeout=180) as c:
            return c.post("/auth/login", json={"name": f"nobody-{i}", "password": "not-a-password"}).status_code

    with ThreadPoolExecutor(FLOOD) as pool:
        answers = [pool.submit(login, i) for i in range(FLOOD)]
        try:
            # every hash thread is taken; the rest of the flood waits behind them
            wait_for(lambda: len(started) >= accounts.HASHING._max_workers, 60, "the hash threads to fill")
            with httpx.Client(base_url=api, timeout=30, headers={"Authorization": f"Bearer {tokens['vic']}"}) as c:
                assert c.get("/livez").status_code == 200
                assert c.get("/takes").status_code == 200  # a synchronous route: its threads are free
                assert c.get("/pools").status_code == 200
            assert not any(a.done() for a in answers)  # the logins are still waiting for their hash
        finally:
            release.set()
        assert {a.result() for a in answers} == {401}


def test_unknown_names_from_one_address_are_rate_limited(sessions, clean):
    with sessions() as session:
        for i in range(accounts.LOGIN_FAILURES_PER_ADDRESS):
            assert accounts.login(session, f"ghost-{i}", "x", "10.7.7.7") is None
        try:
            accounts.login(session, "one-more-ghost", "x", "10.7.7.7")
        except TooManyAttempts as exc:
            assert "from this address" in str(exc) and exc.retry_after > 0
        else:
            raise AssertionError("the address must be refused after the limit")
        assert accounts.login(session, "ghost-0", "x", "10.8.8.8") is None  # another address still may try
