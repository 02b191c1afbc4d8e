"""The demo's last step says, for each product from outside its feed, category or review."""

from __future__ import annotations

from deploy.demo import OUTSIDE, outside_answer


def test_an_accepted_category_is_shown_with_its_score() -> None:
    prediction = {
        "needs_review": False,
        "categories": [
            {"path": "Electronics", "score": 0.97},
            {"path": "Electronics > Communications", "score": 0.91},
        ],
    }
    assert outside_answer(prediction) == "Electronics > Communications (0.91)"


def test_review_or_no_category_shows_review_and_the_best_guess() -> None:
    guess = {"path": "Toys & Games > Toys", "score": 0.4}
    assert outside_answer({"needs_review": True, "categories": [], "top_category": guess}) == (
        "review (best guess 'Toys & Games > Toys')"
    )
    assert outside_answer({"needs_review": False, "categories": [], "top_category": None}) == (
        "review (best guess 'none')"
    )


def test_the_demo_sends_a_phone_a_lego_set_and_a_garden_hose() -> None:
    titles = " ".join(p["title"].lower() for p in OUTSIDE)
    assert "iphone" in titles
    assert "lego" in titles
    assert "garden hose" in titles
