"""Scoring of every shipped instrument against its published definition: minimum, maximum,
cut-off boundaries, reverse keys, lookup tables and each missing-item case."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from slussen.paths import shipped_dir
from slussen.questionnaires.definitions import FormDef, compile_form
from slussen.questionnaires.scoring import check_answers, compute_score, score_form


def load(form_id: str, directory: Path | None = None) -> FormDef:
    path = (directory or shipped_dir("forms")) / f"{form_id}.toml"
    with path.open("rb") as fh:
        form, problems = compile_form(tomllib.load(fh), path)
    assert form is not None, [str(p) for p in problems]
    return form


def scores(form: FormDef, answers: dict[str, int]) -> dict[str, tuple[float | None, bool | None]]:
    return {r.score_id: (r.value, r.is_positive) for r in score_form(form, answers)}


# --- UCLA-3: sum of three 1–3 items, 3–9, higher lonelier; common cut-off >= 6 ------------------


UCLA = ("lack_companionship", "left_out", "isolated")


@pytest.mark.parametrize(
    ("codes", "total", "positive"),
    [((1, 1, 1), 3, False), ((3, 3, 3), 9, True), ((2, 2, 1), 5, False), ((2, 2, 2), 6, True)],
)
def test_ucla3_sums_to_the_published_range(
    codes: tuple[int, int, int], total: int, positive: bool
) -> None:
    form = load("ucla3")
    assert scores(form, dict(zip(UCLA, codes, strict=True))) == {"total": (total, positive)}


@pytest.mark.parametrize("left_out", UCLA)
def test_ucla3_gives_no_score_with_any_item_missing(left_out: str) -> None:
    form = load("ucla3")
    answers = {i: 2 for i in UCLA if i != left_out}
    [result] = score_form(form, answers)
    assert result.value is None and result.is_positive is None
    assert result.missing == (left_out,)


# --- ONS direct question: one item, five answers; the indicator is "often/always" ---------------


@pytest.mark.parametrize(("code", "positive"), [(1, True), (2, False), (5, False)])
def test_ons_direct_question_reports_often_or_always(code: int, positive: bool) -> None:
    form = load("ons_loneliness")
    assert scores(form, {"how_often_lonely": code}) == {"lonely": (code, positive)}
    assert form.scores[0].summary == "share_positive"


def test_ons_direct_question_is_never_added_to_ucla3() -> None:
    assert load("ons_loneliness").item_ids == ("how_often_lonely",)
    assert "how_often_lonely" not in load("ucla3").scores[0].items


def test_ons_direct_question_missing_gives_no_score() -> None:
    assert scores(load("ons_loneliness"), {}) == {"lonely": (None, None)}


# --- ONS4: four separate 0–10 scores, never summed; anxiety lower is better ----------------------


ONS4 = {
    "life_satisfaction": "life_satisfaction",
    "worthwhile": "worthwhile",
    "happiness": "happy_yesterday",
    "anxiety": "anxious_yesterday",
}


@pytest.mark.parametrize("code", [0, 10])
def test_ons4_gives_four_separate_scores(code: int) -> None:
    form = load("ons4")
    result = scores(form, dict.fromkeys(ONS4.values(), code))
    assert result == {score: (code, None) for score in ONS4}
    assert not any(s.id == "total" or len(s.items) > 1 for s in form.scores)


def test_ons4_directions_and_ons_thresholds() -> None:
    form = load("ons4")
    by_id = {s.id: s for s in form.scores}
    assert by_id["anxiety"].direction == "lower_better"
    assert {by_id[s].direction for s in ("life_satisfaction", "worthwhile", "happiness")} == {
        "higher_better"
    }
    band = by_id["life_satisfaction"].band
    assert [band(v).label.en for v in (4, 5, 6, 7, 8, 9)] == [  # type: ignore[union-attr]
        "Low",
        "Medium",
        "Medium",
        "High",
        "High",
        "Very high",
    ]
    anxiety = by_id["anxiety"].band
    assert [anxiety(v).label.en for v in (1, 2, 5, 6)] == [  # type: ignore[union-attr]
        "Very low",
        "Low",
        "Medium",
        "High",
    ]


@pytest.mark.parametrize("left_out", list(ONS4))
def test_ons4_missing_item_blanks_only_its_own_score(left_out: str) -> None:
    form = load("ons4")
    answers = {item: 7 for score, item in ONS4.items() if score != left_out}
    result = scores(form, answers)
    assert result[left_out] == (None, None)
    assert all(result[s] == (7, None) for s in ONS4 if s != left_out)


# --- HLV social relations: four single items -----------------------------------------------------


def test_hlv_items_are_verbatim_and_marked_for_verification() -> None:
    form = load("hlv_social")
    texts = {i.id: i.text.sv for i in form.items}
    assert texts == {
        "emotional_support": "Har du någon du kan dela dina innersta känslor med och "
        "anförtro dig åt?",
        "practical_support": "Kan du få hjälp av någon eller några personer om du har praktiska "
        "problem eller är sjuk?",
        "trust": "Tycker du att man i allmänhet kan lita på de flesta människor?",
        "loneliness": "Upplever du besvär av ensamhet och isolering?",
    }
    assert "verify against Folkhälsomyndigheten" in form.verify
    text = (shipped_dir("forms") / "hlv_social.toml").read_text()
    assert text.count("Verify against Folkhälsomyndigheten's documentation") == 3


def test_hlv_low_trust_is_the_share_answering_no() -> None:
    form = load("hlv_social")
    low = scores(
        form, {"emotional_support": 1, "practical_support": 1, "trust": 2, "loneliness": 1}
    )
    assert low == {
        "emotional_support": (1, False),
        "practical_support": (1, False),
        "trust": (2, True),
        "loneliness": (1, False),
    }
    high = scores(
        form, {"emotional_support": 4, "practical_support": 3, "trust": 1, "loneliness": 4}
    )
    assert high["emotional_support"] == (4, True) and high["trust"] == (1, False)
    assert scores(form, {})["loneliness"] == (None, None)


# --- Mini-SPIN: three 0–4 items, 0–12, >= 6 screen positive -------------------------------------


SPIN = ("item1", "item2", "item3")


@pytest.mark.parametrize(
    ("codes", "total", "positive"),
    [((0, 0, 0), 0, False), ((4, 4, 4), 12, True), ((2, 2, 1), 5, False), ((2, 2, 2), 6, True)],
)
def test_mini_spin_sum_and_cutoff(codes: tuple[int, int, int], total: int, positive: bool) -> None:
    form = load("mini_spin")
    assert scores(form, dict(zip(SPIN, codes, strict=True))) == {"total": (total, positive)}


@pytest.mark.parametrize("left_out", SPIN)
def test_mini_spin_missing_item_gives_no_score_and_no_flag(left_out: str) -> None:
    form = load("mini_spin")
    assert scores(form, {i: 4 for i in SPIN if i != left_out}) == {"total": (None, None)}


def test_mini_spin_ships_no_item_text_and_is_disabled() -> None:
    form = load("mini_spin")
    assert form.licence == "licensed" and not form.enabled and form.is_demo
    assert all(i.text.sv.startswith("DEMO") and i.text.en.startswith("DEMO") for i in form.items)
    text = (shipped_dir("forms") / "mini_spin.toml").read_text().lower()
    for published in ("embarrassment", "center of attention", "looking stupid"):
        assert published not in text


# --- SWEMWBS: sum of seven 1–5 items, converted with the Rasch table -----------------------------

#: Stewart-Brown et al. 2009 / Warwick: raw 7–35 → metric score (domain_facts §1.4).
RASCH = {
    7: 7.00, 8: 9.51, 9: 11.25, 10: 12.40, 11: 13.33, 12: 14.08, 13: 14.75, 14: 15.32, 15: 15.84,
    16: 16.36, 17: 16.88, 18: 17.43, 19: 17.98, 20: 18.59, 21: 19.25, 22: 19.98, 23: 20.73,
    24: 21.54, 25: 22.35, 26: 23.21, 27: 24.11, 28: 25.03, 29: 26.02, 30: 27.03, 31: 28.13,
    32: 29.31, 33: 30.70, 34: 32.55, 35: 35.00,
}  # fmt: skip


@pytest.mark.parametrize("raw", sorted(RASCH))
def test_swemwbs_converts_every_raw_sum_with_the_rasch_table(raw: int) -> None:
    form = load("swemwbs")
    # Spread the raw sum over seven items of 1–5.
    codes, left = [], raw
    for remaining in range(7, 0, -1):
        code = min(5, left - (remaining - 1))
        codes.append(code)
        left -= code
    answers = {f"item{n}": c for n, c in enumerate(codes, start=1)}
    assert scores(form, answers) == {"total": (RASCH[raw], None)}


def test_swemwbs_is_disabled_with_its_notice() -> None:
    form = load("swemwbs")
    assert form.licence == "registration" and not form.enabled
    assert "© NHS Health Scotland, University of Warwick and University of Edinburgh" in (
        form.copyright
    )
    assert scores(form, {f"item{n}": 3 for n in range(1, 7)}) == {"total": (None, None)}


# --- reverse keys, prorating and means (a form written for the test) ----------------------------

SYNTHETIC = """
id = "synthetic"
version = 1
kind = "instrument"
title = { sv = "Test", en = "Test" }
licence = "free"

[option_sets.agree4]
options = [
  { code = 1, sv = "a", en = "a" },
  { code = 2, sv = "b", en = "b" },
  { code = 3, sv = "c", en = "c" },
  { code = 4, sv = "d", en = "d" },
]

[[groups]]
id = "all"
title = { sv = "Alla", en = "All" }
items = ["a", "b", "c", "d"]

[[items]]
id = "a"
text = { sv = "A", en = "A" }
options = "agree4"

[[items]]
id = "b"
text = { sv = "B", en = "B" }
options = "agree4"
reverse = true

[[items]]
id = "c"
text = { sv = "C", en = "C" }
options = "agree4"

[[items]]
id = "d"
text = { sv = "D", en = "D" }
options = "agree4"
reverse = true

[[scores]]
id = "total"
label = { sv = "Summa", en = "Sum" }
method = "sum"
items = ["a", "b", "c", "d"]
range = [4, 16]
direction = "lower_better"
cutoff = { value = 10, positive = "at_or_above" }
missing = { max_missing = 1, rule = "prorate" }

[[scores]]
id = "average"
label = { sv = "Medel", en = "Mean" }
method = "mean"
items = ["a", "b", "c", "d"]
range = [1, 4]
direction = "lower_better"
missing = { max_missing = 2 }
"""


@pytest.fixture
def synthetic(tmp_path: Path) -> FormDef:
    (tmp_path / "synthetic.toml").write_text(SYNTHETIC)
    return load("synthetic", tmp_path)


def test_reverse_keyed_items_count_min_plus_max_minus_code(synthetic: FormDef) -> None:
    # a=1, b=4 (reverse → 1), c=1, d=4 (reverse → 1): the lowest possible score.
    assert scores(synthetic, {"a": 1, "b": 4, "c": 1, "d": 4}) == {
        "total": (4, False),
        "average": (1, None),
    }
    assert scores(synthetic, {"a": 4, "b": 1, "c": 4, "d": 1}) == {
        "total": (16, True),
        "average": (4, None),
    }


def test_prorating_one_missing_item_and_refusing_two(synthetic: FormDef) -> None:
    one_missing = scores(synthetic, {"a": 3, "b": 2, "c": 3})  # 3 + 3 + 3 → 9 × 4/3 = 12
    assert one_missing == {"total": (12, True), "average": (3, None)}
    two_missing = scores(synthetic, {"a": 3, "b": 2})
    assert two_missing == {"total": (None, None), "average": (3, None)}
    assert scores(synthetic, {"a": 3}) == {"total": (None, None), "average": (None, None)}


def test_mean_rounds_to_two_decimals(synthetic: FormDef) -> None:
    result = compute_score(synthetic, synthetic.scores[1], {"a": 1, "b": 3, "c": 2})
    assert result.value == 1.67  # (1 + 2 + 2) / 3


# --- checking answers ---------------------------------------------------------------------------


def test_check_answers_names_out_of_range_and_non_numbers() -> None:
    form = load("ucla3")
    checked = check_answers(form, {"lack_companionship": "7", "left_out": "x", "isolated": "2"})
    assert checked.errors == {
        "lack_companionship": "7 går inte att svara här (1–3).",
        "left_out": "Svaret ska vara en siffra (1–3).",
    }
    assert checked.answers == {"isolated": 2}


@pytest.mark.parametrize("typed", ["²", "--2", "-²", "٢", "2.0"])
def test_digits_int_refuses_are_a_message_not_an_error(typed: str) -> None:
    checked = check_answers(load("ucla3"), {"isolated": typed}, require=False)
    assert checked.errors == {"isolated": "Svaret ska vara en siffra (1–3)."}
    assert checked.answers == {}


def test_online_requires_an_answer_paper_lists_it_as_missing() -> None:
    form = load("ucla3")
    assert check_answers(form, {"left_out": "2"}).errors == {
        "lack_companionship": "Välj ett svar.",
        "isolated": "Välj ett svar.",
    }
    paper = check_answers(form, {"left_out": "2"}, require=False)
    assert paper.is_valid and paper.missing == ["lack_companionship", "isolated"]


def test_ticks_default_to_not_ticked_and_text_is_kept() -> None:
    form = load("barriers")
    checked = check_answers(form, {"cost": "1", "in_own_words": "  Bussen går sällan  "})
    assert checked.answers["cost"] == 1 and checked.answers["transport"] == 0
    assert checked.answers["in_own_words"] == "Bussen går sällan"
    assert form.scores == ()
