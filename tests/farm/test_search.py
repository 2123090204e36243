"""Finding takes: words in any order, take ids, producers in any case, projects; a count of
all matches, newest or oldest first, paged either way; bounded."""

from __future__ import annotations

from ..helpers import age, make_batch


def listed(client, **params) -> dict:
    r = client.get("/takes", params=params)
    assert r.status_code == 200, r.text
    return r.json()


def prompts(body: dict) -> list[str]:
    return [t["params"]["prompt"] for t in body["data"]]


def test_search_matches_all_words_in_any_order_take_ids_and_producers_in_any_case(client, sessions, clean):
    mine = [{"prompt": "A singer on a dark stage", "seed": 1}, {"prompt": "a presenter in a bright studio", "seed": 2}]
    ana = make_batch(sessions, clean, mine, "ana", project="Spring Ad")
    theirs = [{"prompt": "the stage is dark, a singer waits", "seed": 3}, {"prompt": "100% singer_ok", "seed": 4}]
    bo = make_batch(sessions, clean, theirs, "bo", project="winter")
    assert sorted(prompts(listed(client, q="stage SINGER"))) == [
        "A singer on a dark stage",
        "the stage is dark, a singer waits",
    ]
    assert prompts(listed(client, q="singer bright")) == []  # every word must match
    assert prompts(listed(client, q=ana[1][:8])) == ["a presenter in a bright studio"]  # a take id's start
    assert prompts(listed(client, q=ana[1].upper())) == ["a presenter in a bright studio"]
    assert prompts(listed(client, q="100%")) == ["100% singer_ok"]  # % and _ are letters, not wildcards
    assert prompts(listed(client, q="sing_r")) == []  # as a wildcard it would match every singer
    assert {t["id"] for t in listed(client, producer="ANA")["data"]} == set(ana)
    assert {t["id"] for t in listed(client, producer=" Bo ")["data"]} == set(bo)
    assert {t["id"] for t in listed(client, project="spring ad")["data"]} == set(ana)
    assert {t["id"] for t in listed(client, project="winter", q="singer")["data"]} == set(bo)
    assert listed(client, project="nothing")["total"] == 0


def test_projects_are_listed_and_filter_batches(client, sessions, clean):
    make_batch(sessions, clean, [{"prompt": "one", "seed": 1}], "ana", project="alpha")
    make_batch(sessions, clean, [{"prompt": "two", "seed": 2}, {"prompt": "three", "seed": 3}], "bo", project="beta")
    make_batch(sessions, clean, [{"prompt": "four", "seed": 4}], "bo", project="beta")
    assert client.get("/projects").json() == [
        {"name": "beta", "batches": 2},  # the one used last first
        {"name": "alpha", "batches": 1},
    ]
    batches = client.get("/batches", params={"project": "BETA", "with_take_ids": "false"}).json()
    assert len(batches) == 2 and {b["project"] for b in batches} == {"beta"}


def test_a_count_of_every_match_and_both_orders_paged(client, sessions, clean):
    ids = make_batch(sessions, clean, [{"prompt": f"take {i}", "seed": i} for i in range(5)], "ana")
    for i, take_id in enumerate(ids):
        age(sessions, take_id, 100 - i)  # ids[0] the oldest
    first = listed(client, limit=2)
    assert first["total"] == 5 and first["count"] == 2 and [t["id"] for t in first["data"]] == ids[:-3:-1]
    rest = listed(client, limit=2, cursor=first["next_cursor"])
    assert rest["total"] is None and [t["id"] for t in rest["data"]] == [ids[2], ids[1]]  # counted once, on page 1
    oldest = listed(client, limit=3, sort="oldest")
    assert [t["id"] for t in oldest["data"]] == ids[:3]
    assert [t["id"] for t in listed(client, limit=3, sort="oldest", cursor=oldest["next_cursor"])["data"]] == ids[3:]
    assert listed(client, q="take", state="queued")["total"] == 5


def test_bad_searches_are_refused_naming_the_field(client, clean):
    r = client.get("/takes", params={"sort": "random"})
    assert r.status_code == 422 and r.json()["field"] == "sort" and "newest or oldest" in r.json()["detail"]
    r = client.get("/takes", params={"q": " ".join(["w"] * 13)})
    assert r.status_code == 422 and r.json()["field"] == "q" and "at most 12" in r.json()["detail"]
    assert client.get("/takes", params={"q": "x" * 201}).status_code == 422
    assert client.get("/takes", params={"project": "x" * 201}).status_code == 422


def test_a_batch_files_name_names_the_batch_in_its_project(client, clean):
    text = "name: spring promo\nproject: spring\ntakes:\n  - {prompt: a presenter, seed: 1, mode: T}\n"
    r = client.post("/batches/file", files={"file": ("promo.yaml", text.encode())})
    assert r.status_code == 201, r.text
    assert (r.json()["name"], r.json()["project"]) == ("spring promo", "spring")  # not the file's name
    assert listed(client, project="Spring")["total"] == 1
