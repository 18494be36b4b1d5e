"""Tests for slussen.identifiers.

Only Skatteverket's test personnummer (födelsenummer 980–999) are used, plus the
samordningsnummer example 701063-2391 from the domain facts. Never add real numbers.
"""

from __future__ import annotations

from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st

from slussen.identifiers import (
    OID_PERSONNUMMER,
    OID_SAMORDNINGSNUMMER,
    IdentifierError,
    PersonIdentifier,
    format_postal_line,
    luhn_check_digit,
    normalise_phone,
    normalise_postcode,
    parse_person_identifier,
    parse_reserve_identifier,
    validate_hsa_id,
)

TODAY = date(2026, 11, 23)
SWEDISH_LETTERS = set("åäöÅÄÖ")


def parse(text: str) -> PersonIdentifier:
    """Parse with the fixed test date."""
    return parse_person_identifier(text, today=TODAY)


def with_check(nine: str) -> str:
    """Return the ten-digit form of ``nine`` with its correct check digit."""
    return nine + str(luhn_check_digit(nine))


def with_wrong_check(nine: str) -> str:
    """Return the ten-digit form of ``nine`` with a wrong check digit."""
    return nine + str((luhn_check_digit(nine) + 1) % 10)


def assert_refused(text: str, code: str, *words: str) -> IdentifierError:
    """Assert that parsing ``text`` fails with ``code`` and a message containing ``words``."""
    with pytest.raises(IdentifierError) as info:
        parse(text)
    error = info.value
    assert error.code == code, (text, error.code, str(error))
    message = str(error)
    assert message.endswith(".")
    for word in words:
        assert word in message, (text, message)
    return error


# --- Luhn -------------------------------------------------------------------------------


def test_luhn_skatteverket_example() -> None:
    assert luhn_check_digit("640823323") == 4


@pytest.mark.parametrize(
    ("nine", "check"),
    [("811218987", 6), ("900101980", 2), ("000101980", 1), ("701063239", 1)],
)
def test_luhn_known_test_numbers(nine: str, check: int) -> None:
    assert luhn_check_digit(nine) == check


@pytest.mark.parametrize("bad", ["", "12345678", "1234567890", "12345678a", "١٢٣٤٥٦٧٨٩"])
def test_luhn_refuses_other_than_nine_ascii_digits(bad: str) -> None:
    with pytest.raises(IdentifierError):
        luhn_check_digit(bad)


# --- Accepted forms -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "811218-9876",
        "8112189876",
        "198112189876",
        "19811218-9876",
        "  811218-9876  ",
        "\t19811218-9876\n",
    ],
)
def test_accepted_forms_round_trip_to_twelve_digits(text: str) -> None:
    pid = parse(text)
    assert pid == PersonIdentifier(kind="pnr", value="198112189876", issuer=OID_PERSONNUMMER)
    assert pid.display() == "19811218-9876"
    assert parse(pid.display()) == pid
    assert parse(pid.value) == pid


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("189001019802", "189001019802"),
        ("190001019801", "190001019801"),
        ("900101+9802", "189001019802"),
        ("000101+9801", "190001019801"),
        ("000101-9801", "200001019801"),
        ("0001019801", "200001019801"),
        ("811218+9876", "188112189876"),
    ],
)
def test_century_rules(text: str, value: str) -> None:
    assert parse(text).value == value


def test_plus_gives_previous_century() -> None:
    assert parse("811218-9876").value[:4] == "1981"
    assert parse("811218+9876").value[:4] == "1881"


def test_century_boundary_is_today() -> None:
    today_number = with_check("261123980")
    tomorrow_number = with_check("261124980")
    assert parse(today_number).value.startswith("2026")
    assert parse(tomorrow_number).value.startswith("1926")
    # '+' is used from the calendar year of the 100th birthday, even before the birthday.
    assert parse(tomorrow_number[:6] + "+" + tomorrow_number[6:]).value.startswith("1926")
    assert parse(today_number[:6] + "+" + today_number[6:]).value.startswith("1926")
    next_year = with_check("270101980")
    assert parse(next_year).value.startswith("1927")
    assert parse(next_year[:6] + "+" + next_year[6:]).value.startswith("1827")


def test_default_today_is_used_when_not_given() -> None:
    assert parse_person_identifier("19811218-9876").value == "198112189876"


def test_sex_from_ninth_digit() -> None:
    male = parse("811218-9876")  # 9th digit 7: odd
    assert male.sex() == "male"
    female = parse(with_check("811218982"))  # 9th digit 2: even
    assert female.sex() == "female"
    assert parse("900101-9802").sex() == "female"  # 9th digit 0


def test_birth_year() -> None:
    assert parse("811218-9876").birth_year() == 1981
    assert parse("811218+9876").birth_year() == 1881


def test_issuers() -> None:
    assert parse("811218-9876").issuer == OID_PERSONNUMMER
    assert parse("701063-2391").issuer == OID_SAMORDNINGSNUMMER


# --- Leap days ----------------------------------------------------------------------------


def test_leap_day_valid_in_2000() -> None:
    ten = with_check("000229980")
    pid = parse("20" + ten)
    assert pid.value == "20" + ten
    assert parse(ten).value == "20" + ten  # 10-digit form resolves to 2000


def test_leap_day_invalid_in_1900() -> None:
    ten = with_check("000229980")
    assert_refused("19" + ten, "day", "Dagen")
    assert_refused(ten[:6] + "+" + ten[6:], "day", "Dagen")  # '+' gives 1900


# --- Samordningsnummer --------------------------------------------------------------------


@pytest.mark.parametrize("text", ["701063-2391", "7010632391", "197010632391", "19701063-2391"])
def test_samordningsnummer_accepted(text: str) -> None:
    pid = parse(text)
    assert pid.kind == "snr"
    assert pid.value == "197010632391"
    assert pid.display() == "19701063-2391"
    assert pid.sex() == "male"
    assert pid.birth_year() == 1970


def test_samordningsnummer_day_minus_60_must_exist() -> None:
    assert_refused(with_check("810291980"), "day", "samordningsnumret")  # 31 February + 60


# --- Refusals -----------------------------------------------------------------------------


def test_bad_check_digit() -> None:
    error = assert_refused("811218-9875", "check_digit", "Kontrollsiffran")
    assert str(error) == "Kontrollsiffran stämmer inte. Kontrollera personnumret."
    assert_refused("19" + with_wrong_check("811218982"), "check_digit", "Kontrollsiffran")


def test_bad_month() -> None:
    assert_refused("19" + with_check("811318980"), "month", "Månaden")
    assert_refused("19" + with_check("810018980"), "month", "Månaden")


def test_day_32() -> None:
    assert_refused(with_check("811232980"), "day", "Dagen")


def test_day_00() -> None:
    assert_refused(with_check("811200980"), "day", "Dagen")


def test_day_92() -> None:
    assert_refused(with_check("811292980"), "day", "Dagen")


def test_day_31_in_30_day_month() -> None:
    assert_refused(with_check("810431980"), "day", "Dagen")


def test_birth_number_000() -> None:
    assert_refused(with_check("811218000"), "birth_number", "000")


@pytest.mark.parametrize(
    "text", ["81121B-9876", "abc", "811218–9876", "811218 9876", "١٩٨١١٢١٨٩٨٧٦"]
)
def test_letters_and_other_characters(text: str) -> None:
    assert_refused(text, "characters", "siffror")


@pytest.mark.parametrize("text", ["", "   ", "\n"])
def test_empty(text: str) -> None:
    assert_refused(text, "empty", "Fyll i")


@pytest.mark.parametrize(
    "text", ["1981121898761", "19811218-98761", "811218987", "1" * 13, "9" * 100]
)
def test_wrong_length(text: str) -> None:
    assert_refused(text, "length", "10 eller 12 siffror")


@pytest.mark.parametrize("text", ["8112-189876", "-8112189876", "811218--9876", "811218-+9876"])
def test_misplaced_separator(text: str) -> None:
    assert_refused(text, "separator", "Bindestrecket")


def test_plus_not_allowed_with_twelve_digits() -> None:
    assert_refused("19811218+9876", "separator", "Plustecken")


@pytest.mark.parametrize("century", ["17", "21", "00", "99"])
def test_twelve_digit_century_must_be_18_19_or_20(century: str) -> None:
    assert_refused(century + "811218-9876", "century", "18, 19 eller 20")


def test_twelve_digit_date_in_future_is_refused() -> None:
    assert_refused("20" + with_check("261124980"), "future", "framtiden")
    assert parse("20" + with_check("261123980")).value.startswith("2026")


def test_messages_are_swedish() -> None:
    samples = [
        "811218-9875",
        "",
        "abc",
        "1234",
        "19" + with_check("811318980"),
        with_check("811232980"),
        with_check("811218000"),
    ]
    for text in samples:
        with pytest.raises(IdentifierError) as info:
            parse(text)
        message = str(info.value)
        assert "personnumret" in message.lower() or "siffror" in message, message


# --- PersonIdentifier sanity checks --------------------------------------------------------


def test_person_identifier_refuses_inconsistent_construction() -> None:
    with pytest.raises(IdentifierError):
        PersonIdentifier(kind="pnr", value="8112189876", issuer=OID_PERSONNUMMER)
    with pytest.raises(IdentifierError):
        PersonIdentifier(kind="pnr", value="198112189876", issuer=OID_SAMORDNINGSNUMMER)
    with pytest.raises(IdentifierError):
        PersonIdentifier(kind="reserv", value="ABC", issuer=None)


# --- Reserve identifiers ------------------------------------------------------------------

STOCKHOLM_RESERVE_OID = "1.2.752.97.3.1.3"
VGR_RESERVE_OID = "1.2.752.113.11.0.2.1.1.1"


def test_reserve_typed_with_issuer_and_no_luhn() -> None:
    pid = parse_reserve_identifier(" 19810829 m071 ", issuer=VGR_RESERVE_OID)
    assert pid == PersonIdentifier(kind="reserv", value="19810829M071", issuer=VGR_RESERVE_OID)
    assert pid.display() == "19810829M071"
    assert pid.sex() is None
    assert pid.birth_year() is None


def test_reserve_check_digit_not_assumed() -> None:
    # A value that would fail Luhn as a personnummer is still a valid reserve id.
    pid = parse_reserve_identifier("198112189875", issuer=STOCKHOLM_RESERVE_OID)
    assert pid.value == "198112189875"
    assert pid.kind == "reserv"


@pytest.mark.parametrize("text", ["", "   ", "A" * 21, "ÅÄÖ123", "12-34", "ab_c"])
def test_reserve_refused_values(text: str) -> None:
    with pytest.raises(IdentifierError) as info:
        parse_reserve_identifier(text, issuer=STOCKHOLM_RESERVE_OID)
    assert "reservnumret" in str(info.value).lower()


@pytest.mark.parametrize(
    "issuer", ["", "abc", "1.2.", ".1.2", "1..2", "1", OID_PERSONNUMMER, OID_SAMORDNINGSNUMMER]
)
def test_reserve_issuer_must_be_a_reserve_oid(issuer: str) -> None:
    with pytest.raises(IdentifierError) as info:
        parse_reserve_identifier("991981000010", issuer=issuer)
    assert info.value.code == "issuer"


def test_reserve_max_length_20() -> None:
    assert parse_reserve_identifier("A" * 20, issuer=STOCKHOLM_RESERVE_OID).value == "A" * 20


# --- Postcodes ----------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["11418", "114 18", " 114  18 ", "1 1 4 1 8"])
def test_postcode_normalised(text: str) -> None:
    assert normalise_postcode(text) == "114 18"


@pytest.mark.parametrize("text", ["01418", "1141", "114181", "", "114-18", "SE-114 18", "1141a"])
def test_postcode_refused(text: str) -> None:
    with pytest.raises(IdentifierError) as info:
        normalise_postcode(text)
    assert str(info.value) == "Postnumret ska ha fem siffror, till exempel 114 18."


@pytest.mark.parametrize(
    ("postcode", "town", "line"),
    [
        ("11418", "STOCKHOLM", "114 18 STOCKHOLM"),
        ("114 18", "Stockholm", "114 18 STOCKHOLM"),
        ("72219", "Västerås", "722 19 VÄSTERÅS"),
        ("19430", "Upplands  Väsby", "194 30 UPPLANDS VÄSBY"),
        ("19631", " Upplands-Bro ", "196 31 UPPLANDS-BRO"),
        ("44196", "alingsås", "441 96 ALINGSÅS"),
        ("63502", "Ärla", "635 02 ÄRLA"),
    ],
)
def test_format_postal_line(postcode: str, town: str, line: str) -> None:
    assert format_postal_line(postcode, town) == line


def test_format_postal_line_refuses_empty_town_and_bad_postcode() -> None:
    with pytest.raises(IdentifierError):
        format_postal_line("11418", "  ")
    with pytest.raises(IdentifierError):
        format_postal_line("01418", "Stockholm")


# --- HSA-id -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("SE2321000016-abc1", "SE2321000016-abc1"),
        ("  SE2321000016-ABC1\n", "SE2321000016-ABC1"),
        ("SE2321000016-" + "a" * 18, "SE2321000016-" + "a" * 18),  # exactly 31
    ],
)
def test_hsa_id_accepted(text: str, value: str) -> None:
    assert validate_hsa_id(text) == value


def test_hsa_id_32_chars_refused() -> None:
    with pytest.raises(IdentifierError) as info:
        validate_hsa_id("SE2321000016-" + "a" * 19)
    assert "31 tecken" in str(info.value)


@pytest.mark.parametrize(
    "text",
    [
        "SE2321000016-åke",
        "SE2321000016abc1",
        "SE232100001-abc1",
        "se2321000016-abc1",
        "SE2321000016-",
        "SE2321000016-a@b",
    ],
)
def test_hsa_id_refused(text: str) -> None:
    with pytest.raises(IdentifierError) as info:
        validate_hsa_id(text)
    assert "HSA-id" in str(info.value)


def test_hsa_id_empty() -> None:
    with pytest.raises(IdentifierError) as info:
        validate_hsa_id("  ")
    assert "Fyll i" in str(info.value)


# --- Phone --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("070-123 45 67", "0701234567"),
        ("0701234567", "0701234567"),
        ("+46 70 123 45 67", "+46701234567"),
        (" 08-123 456 ", "08123456"),
        ("1234567", "1234567"),
        ("+123456789012345", "+123456789012345"),
    ],
)
def test_phone_normalised(text: str, value: str) -> None:
    assert normalise_phone(text) == value


@pytest.mark.parametrize(
    "text",
    ["", "123456", "1234567890123456", "070 123 45 6x", "46+701234567", "(08) 123 456", "++46701"],
)
def test_phone_refused(text: str) -> None:
    with pytest.raises(IdentifierError) as info:
        normalise_phone(text)
    assert "Telefonnumret" in str(info.value) or "Fyll i" in str(info.value)


# --- Properties ---------------------------------------------------------------------------


def assert_parses_consistently_or_refuses(text: str) -> None:
    """Either parse to a value whose display re-parses identically, or raise IdentifierError."""
    try:
        pid = parse(text)
    except IdentifierError as error:
        assert str(error)
        return
    assert pid.kind in ("pnr", "snr")
    assert len(pid.value) == 12
    assert pid.value.isascii()
    assert pid.value.isdigit()
    assert parse(pid.display()) == pid
    assert parse(pid.value) == pid


@given(st.text())
def test_arbitrary_text_parses_or_raises_identifier_error(text: str) -> None:
    assert_parses_consistently_or_refuses(text)


digit_strings = st.text(alphabet="0123456789", min_size=0, max_size=14)


@given(
    digit_strings,
    st.sampled_from(["", "-", "+", " ", "--"]),
    digit_strings,
    st.sampled_from(["", " ", "\n"]),
)
def test_digit_strings_with_separators_parse_or_raise(
    head: str, separator: str, tail: str, padding: str
) -> None:
    assert_parses_consistently_or_refuses(padding + head + separator + tail + padding)


@given(st.text(alphabet="0123456789-+ ", max_size=16))
def test_digit_and_separator_soup_parses_or_raises(text: str) -> None:
    assert_parses_consistently_or_refuses(text)


@given(
    st.dates(min_value=date(1900, 1, 1), max_value=TODAY),
    st.integers(min_value=980, max_value=999),
    st.booleans(),
    st.sampled_from(["12", "12-", "10", "10-"]),
)
def test_valid_test_numbers_in_all_forms(
    birth: date, birth_number: int, coordination: bool, form: str
) -> None:
    day = birth.day + (60 if coordination else 0)
    nine = f"{birth.year % 100:02d}{birth.month:02d}{day:02d}{birth_number:03d}"
    ten = with_check(nine)
    full = f"{birth.year:04d}{ten[2:]}"
    if form.startswith("12"):
        text = full if form == "12" else f"{full[:8]}-{full[8:]}"
    elif TODAY.year - birth.year >= 100:
        # '+' from the calendar year the person turns 100.
        text = f"{ten[:6]}+{ten[6:]}"
    else:
        text = ten if form == "10" else f"{ten[:6]}-{ten[6:]}"
    pid = parse(text)
    assert pid.value == full
    assert pid.kind == ("snr" if coordination else "pnr")
    assert pid.sex() == ("male" if birth_number % 2 == 1 else "female")
    assert pid.birth_year() == birth.year


# --- the 10-digit century rule and the region's reservnummer (issue #18) ----------------------


def test_ten_digits_follow_the_minus_plus_century_rule_on_skatteverkets_test_numbers() -> None:
    from slussen.identifiers import parse_person_identifier

    today = date(2026, 12, 7)
    # Skatteverket's test number 19811218-9876, typed in each accepted form.
    for typed in ("198112189876", "19811218-9876", "811218-9876", "8112189876"):
        assert parse_person_identifier(typed, today=today).value == "198112189876", typed
    # 121212-1212 with "-" is someone under 100: born 2012; with "+" born 1912.
    assert parse_person_identifier("121212-1212", today=today).value == "201212121212"
    assert parse_person_identifier("121212+1212", today=today).value == "191212121212"


def test_a_regions_reservnummer_is_checked_against_its_format_and_check_digit() -> None:
    from slussen.identifiers import (
        MSG_RESERVE_CHECK_DIGIT,
        MSG_RESERVE_NOT_REGION,
        MSG_RESERVE_NOT_USED,
        ReserveFormat,
        parse_identifier,
    )

    region = ReserveFormat(
        issuer="1.2.752.97.3.1.3", pattern="99[0-9]{8}", check="luhn", example="9912345676"
    )
    parsed = parse_identifier("99-1234 5676", reserve=region, is_reserve=True)
    assert (parsed.kind, parsed.value, parsed.issuer) == ("reserv", "9912345676", region.issuer)
    with pytest.raises(IdentifierError, match=MSG_RESERVE_CHECK_DIGIT):
        parse_identifier("9912345675", reserve=region, is_reserve=True)
    with pytest.raises(IdentifierError, match=MSG_RESERVE_NOT_REGION):
        parse_identifier("AB12345676", reserve=region, is_reserve=True)
    with pytest.raises(IdentifierError, match=MSG_RESERVE_NOT_USED):
        parse_identifier("9912345676", reserve=None, is_reserve=True)
    with pytest.raises(ValueError, match="not valid itself"):
        ReserveFormat(issuer="1.2.752.97.3.1.3", pattern="99[0-9]{8}", check="luhn", example="99")
