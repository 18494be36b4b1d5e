"""Parsing and validation of Swedish identifiers and address parts.

Pure functions with no Flask or database imports. Every refusal raises
:class:`IdentifierError` with a short Swedish message that can be shown next to a
form field.

Sources (see ``docs``/reference, domain facts §4.1–4.5 and facts 17–23):

* Personnummer: Skatteverket, stored as 12 digits ``YYYYMMDDNNNC``; Luhn (weights 2, 1)
  over the 10-digit form; ``+`` in the 10-digit form for people aged 100 or more.
* Samordningsnummer: the day is increased by 60 (61–91), same check digit rule.
* Reservnummer: formats differ per region, so they are typed with the issuing
  system's OID and never checked with Luhn here.
* HSA-id: ``SE`` + 10 digits + ``-`` + ``[A-Za-z0-9]+``, at most 31 characters.
* Postnummer: five digits written ``NNN NN``, never starting with 0.

The date part of a personnummer is not guaranteed to be the true birth date, so
:meth:`PersonIdentifier.birth_year` is meant for age bands only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from typing import Final, Literal

from personnummer import personnummer as _pnr_lib

__all__ = [
    "OID_HSA_ID",
    "OID_PERSONNUMMER",
    "OID_SAMORDNINGSNUMMER",
    "IdentifierError",
    "PersonIdentifier",
    "ReserveFormat",
    "format_postal_line",
    "luhn_check_digit",
    "normalise_phone",
    "normalise_postcode",
    "parse_identifier",
    "parse_person_identifier",
    "parse_reserve_identifier",
    "parse_reserve_number",
    "validate_hsa_id",
]

OID_PERSONNUMMER: Final = "1.2.752.129.2.1.3.1"
OID_SAMORDNINGSNUMMER: Final = "1.2.752.129.2.1.3.3"
OID_HSA_ID: Final = "1.2.752.129.2.1.4.1"

IdentifierKind = Literal["pnr", "snr", "reserv"]

# Inputs longer than this are refused before any further work.
_MAX_INPUT_LENGTH: Final = 64

_DIGITS: Final = frozenset("0123456789")
_TWELVE_DIGITS_RE: Final = re.compile(r"[0-9]{12}", re.ASCII)
_PNR_SHAPE_RE: Final = re.compile(r"([0-9]{6}|[0-9]{8})([-+]?)([0-9]{4})", re.ASCII)
_RESERVE_RE: Final = re.compile(r"[A-Z0-9]{1,20}", re.ASCII)
_OID_RE: Final = re.compile(r"(?:0|[1-9][0-9]*)(?:\.(?:0|[1-9][0-9]*))+", re.ASCII)
_HSA_RE: Final = re.compile(r"SE[0-9]{10}-[A-Za-z0-9]+", re.ASCII)
_HSA_MAX_LENGTH: Final = 31
_POSTCODE_RE: Final = re.compile(r"[1-9][0-9]{4}", re.ASCII)
_PHONE_RE: Final = re.compile(r"\+?[0-9][0-9 -]*", re.ASCII)
_PHONE_MIN_DIGITS: Final = 7
_PHONE_MAX_DIGITS: Final = 15
_ALLOWED_CENTURIES: Final = frozenset({18, 19, 20})

# Swedish messages, kept together so the wording stays consistent.
MSG_PNR_EMPTY: Final = "Fyll i personnumret, till exempel ÅÅÅÅMMDD-NNNN."
MSG_PNR_CHARACTERS: Final = (
    "Personnumret får bara innehålla siffror och ett bindestreck (eller plustecken)."
)
MSG_PNR_LENGTH: Final = "Personnumret ska ha 10 eller 12 siffror, till exempel ÅÅÅÅMMDD-NNNN."
MSG_PNR_SEPARATOR: Final = (
    "Bindestrecket ska stå före de fyra sista siffrorna, som i ÅÅÅÅMMDD-NNNN."
)
MSG_PNR_PLUS_WITH_CENTURY: Final = (
    "Plustecken används bara när personnumret skrivs med tio siffror. "
    "Skriv ÅÅÅÅMMDD-NNNN i stället."
)
MSG_PNR_CENTURY: Final = "Året i personnumret ska börja med 18, 19 eller 20."
MSG_PNR_MONTH: Final = "Månaden i personnumret ska vara 01–12. Kontrollera personnumret."
MSG_PNR_DAY: Final = "Dagen i personnumret finns inte i den månaden. Kontrollera personnumret."
MSG_SNR_DAY: Final = (
    "Dagen i samordningsnumret finns inte i den månaden "
    "(dagen minus 60 ska vara ett riktigt datum). Kontrollera numret."
)
MSG_PNR_FUTURE: Final = "Datumet i personnumret ligger i framtiden. Kontrollera personnumret."
MSG_PNR_BIRTH_NUMBER: Final = (
    "De tre siffrorna efter datumet kan inte vara 000. Kontrollera personnumret."
)
MSG_PNR_CHECK_DIGIT: Final = "Kontrollsiffran stämmer inte. Kontrollera personnumret."
MSG_PNR_REJECTED: Final = "Personnumret är inte giltigt. Kontrollera personnumret."

MSG_RESERVE_EMPTY: Final = "Fyll i reservnumret."
MSG_RESERVE_FORMAT: Final = (
    "Reservnumret får bara innehålla bokstäverna A–Z och siffror, högst 20 tecken."
)
MSG_RESERVE_ISSUER: Final = (
    "Ange vilket system som har utfärdat reservnumret (ett OID, till exempel 1.2.752.97.3.1.3)."
)
MSG_RESERVE_ISSUER_IS_PNR: Final = (
    "Ett reservnummer kan inte ha samma utfärdare som personnummer eller samordningsnummer."
)

MSG_RESERVE_NOT_REGION: Final = (
    "Numret har inte regionens form för reservnummer. Kontrollera reservnumret."
)
MSG_RESERVE_CHECK_DIGIT: Final = "Reservnumrets kontrollsiffra stämmer inte. Kontrollera numret."
MSG_RESERVE_NOT_USED: Final = "Regionen använder inte reservnummer här."

MSG_LUHN_INPUT: Final = "Kontrollsiffran räknas fram ur exakt nio siffror."

MSG_POSTCODE: Final = "Postnumret ska ha fem siffror, till exempel 114 18."
MSG_TOWN_EMPTY: Final = "Fyll i postorten, till exempel Stockholm."

MSG_HSA_EMPTY: Final = "Fyll i HSA-id, till exempel SE2321000016-abc1."
MSG_HSA_TOO_LONG: Final = "HSA-id får vara högst 31 tecken långt."
MSG_HSA_FORMAT: Final = (
    "HSA-id ska vara SE, tio siffror, ett bindestreck och sedan bokstäver a–z eller siffror, "
    "till exempel SE2321000016-abc1. Å, ä, ö och andra tecken får inte förekomma."
)

MSG_PHONE_EMPTY: Final = "Fyll i telefonnumret, till exempel 070-123 45 67."
MSG_PHONE_CHARACTERS: Final = (
    "Telefonnumret får bara innehålla siffror, mellanslag och bindestreck, "
    "och eventuellt ett plustecken först."
)
MSG_PHONE_LENGTH: Final = "Telefonnumret ska ha mellan 7 och 15 siffror."


class IdentifierError(ValueError):
    """An identifier or address part was refused.

    ``str(error)`` is a Swedish message suitable to show next to a form field, e.g.
    ``"Kontrollsiffran stämmer inte. Kontrollera personnumret."``. ``code`` is a stable
    English key (e.g. ``"check_digit"``) for programs and tests.
    """

    def __init__(self, message: str, *, code: str = "invalid") -> None:
        """Create the error with a Swedish ``message`` and a machine-readable ``code``."""
        super().__init__(message)
        self.message = message
        self.code = code


@dataclass(frozen=True)
class PersonIdentifier:
    """A typed person identifier: personnummer, samordningsnummer or reservnummer.

    ``value`` is 12 digits ``YYYYMMDDNNNC`` for ``pnr``/``snr``; for ``reserv`` it is the
    typed value upper-cased without spaces. ``issuer`` is the OID of the identifier
    system (fixed for ``pnr``/``snr``, the issuing system's OID for ``reserv``).
    """

    kind: IdentifierKind
    value: str
    issuer: str | None

    def __post_init__(self) -> None:
        """Refuse values whose shape does not match ``kind`` (cheap sanity check)."""
        if self.kind in ("pnr", "snr"):
            if _TWELVE_DIGITS_RE.fullmatch(self.value) is None:
                raise IdentifierError(MSG_PNR_LENGTH, code="format")
            expected = OID_PERSONNUMMER if self.kind == "pnr" else OID_SAMORDNINGSNUMMER
            if self.issuer != expected:
                raise IdentifierError(MSG_PNR_REJECTED, code="issuer")
        elif self.kind == "reserv":
            if _RESERVE_RE.fullmatch(self.value) is None:
                raise IdentifierError(MSG_RESERVE_FORMAT, code="format")
            if self.issuer is None or _OID_RE.fullmatch(self.issuer) is None:
                raise IdentifierError(MSG_RESERVE_ISSUER, code="issuer")
        else:  # pragma: no cover - guarded by the type checker
            raise IdentifierError(MSG_PNR_REJECTED, code="kind")

    def display(self) -> str:
        """Return the form shown to people: ``YYYYMMDD-NNNC`` or the reserve value."""
        if self.kind == "reserv":
            return self.value
        return f"{self.value[:8]}-{self.value[8:]}"

    def sex(self) -> Literal["female", "male"] | None:
        """Return the legal sex from the 9th digit of the 10-digit form (odd = male).

        Returns ``None`` for reserve identifiers, whose formats differ per region.
        """
        if self.kind == "reserv":
            return None
        return "male" if int(self.value[10]) % 2 == 1 else "female"

    def birth_year(self) -> int | None:
        """Return the year of the date part, or ``None`` for reserve identifiers.

        Approximate: Skatteverket may use a nearby day when numbers run out
        (prop. 2008/09:111), so use this for age bands only, never as an exact birth date.
        """
        if self.kind == "reserv":
            return None
        return int(self.value[:4])


def luhn_check_digit(nine_digits: str) -> int:
    """Return the Luhn check digit (weights 2, 1, 2, …) for the nine digits ``YYMMDDNNN``.

    Example: ``luhn_check_digit("640823323") == 4`` (Skatteverket's example).
    Raises :class:`IdentifierError` unless given exactly nine ASCII digits.
    """
    if len(nine_digits) != 9 or not set(nine_digits) <= _DIGITS:
        raise IdentifierError(MSG_LUHN_INPUT, code="format")
    total = 0
    for index, char in enumerate(nine_digits):
        product = int(char) * (2 if index % 2 == 0 else 1)
        total += product // 10 + product % 10
    return (10 - total % 10) % 10


def _valid_date(year: int, month: int, day: int) -> bool:
    """Return whether the calendar date exists."""
    try:
        date(year, month, day)
    except ValueError:
        return False
    return True


def _resolve_century(yy: int, month: int, day: int, today: date, plus: bool) -> int:
    """Return the full year for a 10-digit number.

    Without ``+``: the most recent year ending in ``yy`` whose (month, day) is not after
    ``today``. With ``+``: the most recent year ending in ``yy`` in which the person turns
    100 or more, i.e. at most ``today.year - 100``. Skatteverket switches to ``+`` from the
    calendar year of the 100th birthday, not the birthday itself, so someone turning 100
    later this year already has ``+``.
    """
    if plus:
        latest = today.year - 100
        return latest - (latest - yy) % 100
    year = today.year - (today.year - yy) % 100
    if (year, month, day) > (today.year, today.month, today.day):
        year -= 100
    return year


def parse_person_identifier(text: str, *, today: date | None = None) -> PersonIdentifier:
    """Parse a personnummer or samordningsnummer typed by a person.

    Accepted forms (surrounding whitespace ignored): ``YYMMDD-NNNC``, ``YYMMDD+NNNC``,
    ``YYMMDDNNNC``, ``YYYYMMDDNNNC`` and ``YYYYMMDD-NNNC``. For 10-digit forms the century
    is the most recent one that does not put the date after ``today`` (default: the
    current date); with ``+`` it is the most recent year at least 100 years before
    ``today.year`` (the calendar-year rule of 18 § folkbokföringslagen). 12-digit forms
    must start with 18, 19 or 20 and may not use ``+``. A 12-digit date after ``today``
    is refused.

    Days 61–91 give a samordningsnummer (kind ``"snr"``); day minus 60 must be a real date.
    The födelsenummer may not be 000 and the check digit must match.

    Raises only :class:`IdentifierError`, whose message says in Swedish what is wrong.
    """
    if not isinstance(text, str):
        raise IdentifierError(MSG_PNR_EMPTY, code="empty")
    if today is None:
        today = date.today()
    if len(text) > _MAX_INPUT_LENGTH:
        raise IdentifierError(MSG_PNR_LENGTH, code="length")
    stripped = text.strip()
    if not stripped:
        raise IdentifierError(MSG_PNR_EMPTY, code="empty")
    if not all(char in _DIGITS or char in "-+" for char in stripped):
        raise IdentifierError(MSG_PNR_CHARACTERS, code="characters")
    digit_count = sum(1 for char in stripped if char in _DIGITS)
    if digit_count not in (10, 12):
        raise IdentifierError(MSG_PNR_LENGTH, code="length")
    match = _PNR_SHAPE_RE.fullmatch(stripped)
    if match is None:
        raise IdentifierError(MSG_PNR_SEPARATOR, code="separator")
    date_part, separator, tail = match.groups()
    plus = separator == "+"

    month = int(date_part[-4:-2])
    raw_day = int(date_part[-2:])
    kind: IdentifierKind = "snr" if 61 <= raw_day <= 91 else "pnr"
    day = raw_day - 60 if kind == "snr" else raw_day

    if len(date_part) == 8:
        if plus:
            raise IdentifierError(MSG_PNR_PLUS_WITH_CENTURY, code="separator")
        if int(date_part[:2]) not in _ALLOWED_CENTURIES:
            raise IdentifierError(MSG_PNR_CENTURY, code="century")
        year = int(date_part[:4])
    else:
        year = _resolve_century(int(date_part[:2]), month, day, today, plus)
        if year // 100 not in _ALLOWED_CENTURIES:
            raise IdentifierError(MSG_PNR_CENTURY, code="century")

    if not 1 <= month <= 12:
        raise IdentifierError(MSG_PNR_MONTH, code="month")
    if not _valid_date(year, month, day):
        raise IdentifierError(MSG_SNR_DAY if kind == "snr" else MSG_PNR_DAY, code="day")
    if date(year, month, day) > today:
        raise IdentifierError(MSG_PNR_FUTURE, code="future")
    if tail[:3] == "000":
        raise IdentifierError(MSG_PNR_BIRTH_NUMBER, code="birth_number")

    ten = date_part[-6:] + tail
    if luhn_check_digit(ten[:9]) != int(ten[9]):
        raise IdentifierError(MSG_PNR_CHECK_DIGIT, code="check_digit")

    value = f"{year:04d}{ten[2:]}"
    _library_cross_check(value)
    issuer = OID_PERSONNUMMER if kind == "pnr" else OID_SAMORDNINGSNUMMER
    return PersonIdentifier(kind=kind, value=value, issuer=issuer)


def _library_cross_check(value: str) -> None:
    """Ask the ``personnummer`` library for a second opinion on a 12-digit value.

    Our own rules are stricter (ASCII digits only, no trailing newline, explicit
    century and future-date rules), so the library only ever confirms; a refusal
    here would indicate a bug and is reported as a generic invalid number.
    """
    try:
        parsed = _pnr_lib.Personnummer(value)
        agrees = parsed.format(True) == value
    except (_pnr_lib.PersonnummerException, ValueError):
        agrees = False
    if not agrees:
        raise IdentifierError(MSG_PNR_REJECTED, code="rejected")


def parse_reserve_identifier(text: str, *, issuer: str) -> PersonIdentifier:
    """Parse a reservnummer issued by the system identified by the OID ``issuer``.

    The value is upper-cased and spaces are removed; it must then be 1–20 characters
    A–Z or 0–9. No check digit is assumed, since formats differ per region.
    ``issuer`` must look like an OID (digits separated by dots) and may not be the
    personnummer or samordningsnummer OID.
    """
    if not isinstance(text, str):
        raise IdentifierError(MSG_RESERVE_EMPTY, code="empty")
    if not isinstance(issuer, str) or _OID_RE.fullmatch(issuer.strip()) is None:
        raise IdentifierError(MSG_RESERVE_ISSUER, code="issuer")
    issuer = issuer.strip()
    if issuer in (OID_PERSONNUMMER, OID_SAMORDNINGSNUMMER):
        raise IdentifierError(MSG_RESERVE_ISSUER_IS_PNR, code="issuer")
    if len(text) > _MAX_INPUT_LENGTH:
        raise IdentifierError(MSG_RESERVE_FORMAT, code="length")
    value = "".join(text.split()).upper()
    if not value:
        raise IdentifierError(MSG_RESERVE_EMPTY, code="empty")
    if _RESERVE_RE.fullmatch(value) is None:
        raise IdentifierError(MSG_RESERVE_FORMAT, code="format")
    return PersonIdentifier(kind="reserv", value=value, issuer=issuer)


#: The check digit rules a region's reservnummer may have.
RESERVE_CHECKS: Final = ("none", "luhn")


@dataclass(frozen=True)
class ReserveFormat:
    """A region's reservnummer: the issuing system's OID, the shape as a regular expression
    over the value (upper-cased, spaces and hyphens removed), and its check digit rule: "luhn"
    (the last digit is the Luhn check digit, weights 2, 1, … from the right, over the value's
    digits) or "none". `example` is shown in the field's hint."""

    issuer: str
    pattern: str
    check: str = "none"
    example: str = ""

    def __post_init__(self) -> None:
        """Refuse a format that could never be used (for the configuration check)."""
        if _OID_RE.fullmatch(self.issuer) is None or self.issuer in (
            OID_PERSONNUMMER,
            OID_SAMORDNINGSNUMMER,
        ):
            raise ValueError(f"reserve number issuer {self.issuer!r} is not a region's OID")
        try:
            re.compile(self.pattern)
        except re.error as exc:
            raise ValueError(f"reserve number pattern {self.pattern!r}: {exc}") from None
        if self.check not in RESERVE_CHECKS:
            raise ValueError(f"reserve number check must be one of {', '.join(RESERVE_CHECKS)}")
        if self.example and not self.matches(self.example):
            raise ValueError(f"the reserve number example {self.example!r} is not valid itself")

    def matches(self, text: str) -> bool:
        """Whether `text` is a valid reservnummer of this format."""
        try:
            parse_reserve_number(text, self)
        except IdentifierError:
            return False
        return True


def _luhn_valid(digits: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(digits)):
        product = int(char) * (2 if index % 2 == 1 else 1)
        total += product // 10 + product % 10
    return total % 10 == 0


def parse_reserve_number(text: str, region: ReserveFormat) -> PersonIdentifier:
    """Parse a reservnummer in the region's format: spaces and hyphens are removed and letters
    upper-cased, then the value must match the region's pattern whole and pass its check digit
    rule. Raises :class:`IdentifierError` with a Swedish message."""
    if not isinstance(text, str) or not text.strip():
        raise IdentifierError(MSG_RESERVE_EMPTY, code="empty")
    if len(text) > _MAX_INPUT_LENGTH:
        raise IdentifierError(MSG_RESERVE_FORMAT, code="length")
    value = "".join(text.replace("-", " ").split()).upper()
    if _RESERVE_RE.fullmatch(value) is None:
        raise IdentifierError(MSG_RESERVE_FORMAT, code="format")
    if re.fullmatch(region.pattern, value) is None:
        raise IdentifierError(MSG_RESERVE_NOT_REGION, code="region_format")
    if region.check == "luhn":
        digits = "".join(char for char in value if char in _DIGITS)
        if len(digits) < 2 or not _luhn_valid(digits):
            raise IdentifierError(MSG_RESERVE_CHECK_DIGIT, code="check_digit")
    return PersonIdentifier(kind="reserv", value=value, issuer=region.issuer)


def parse_identifier(
    text: str,
    *,
    reserve: ReserveFormat | None = None,
    is_reserve: bool = False,
    today: date | None = None,
) -> PersonIdentifier:
    """Parse what a person typed in an identifier field: a reservnummer in the region's format
    when `is_reserve` (the field's choice), else a personnummer or samordningsnummer
    (`parse_person_identifier`). Refuses a reservnummer where the region has none configured."""
    if is_reserve:
        if reserve is None:
            raise IdentifierError(MSG_RESERVE_NOT_USED, code="no_reserve")
        return parse_reserve_number(text, reserve)
    return parse_person_identifier(text, today=today)


def normalise_postcode(text: str) -> str:
    """Return a Swedish postnummer as ``"NNN NN"``.

    ``"11418"``, ``"114 18"`` and ``" 114  18 "`` all give ``"114 18"``. Five digits,
    not starting with 0; otherwise :class:`IdentifierError`.
    """
    if not isinstance(text, str) or len(text) > _MAX_INPUT_LENGTH:
        raise IdentifierError(MSG_POSTCODE, code="format")
    compact = "".join(text.split())
    if _POSTCODE_RE.fullmatch(compact) is None:
        raise IdentifierError(MSG_POSTCODE, code="format")
    return f"{compact[:3]} {compact[3:]}"


def _postal_town(town: str) -> str:
    """Return the postort as the address's last line writes it: in capitals, spaces collapsed
    ("Upplands  väsby" becomes "UPPLANDS VÄSBY")."""
    return " ".join(town.split()).upper()


def format_postal_line(postcode: str, town: str) -> str:
    """Return the last line of a postal address, e.g. ``"722 19 VÄSTERÅS"``.

    The postnummer with its space, one space, and the postort in capitals, as PostNord's
    addressing guidance (after the Swedish standard SS 613401) asks for the delivery address:
    the sorting machines and the carrier read the last line first. Only the address in the
    letter's window is written so; a town in running text keeps its normal case.
    """
    normalised = normalise_postcode(postcode)
    if not isinstance(town, str) or not town.strip():
        raise IdentifierError(MSG_TOWN_EMPTY, code="empty")
    return f"{normalised} {_postal_town(town)}"


def validate_hsa_id(text: str) -> str:
    """Validate an HSA-id (``SE`` + 10 digits + ``-`` + ``[A-Za-z0-9]+``, at most 31 chars).

    Returns the value with surrounding whitespace removed.
    """
    if not isinstance(text, str):
        raise IdentifierError(MSG_HSA_EMPTY, code="empty")
    value = text.strip()
    if not value:
        raise IdentifierError(MSG_HSA_EMPTY, code="empty")
    if len(value) > _HSA_MAX_LENGTH:
        raise IdentifierError(MSG_HSA_TOO_LONG, code="length")
    if _HSA_RE.fullmatch(value) is None:
        raise IdentifierError(MSG_HSA_FORMAT, code="format")
    return value


def normalise_phone(text: str) -> str:
    """Return a phone number as its digits, keeping a leading ``+``.

    Spaces and hyphens are allowed in the input, e.g. ``"070-123 45 67"`` gives
    ``"0701234567"`` and ``"+46 70 123 45 67"`` gives ``"+46701234567"``. The number
    must have 7–15 digits.
    """
    if not isinstance(text, str):
        raise IdentifierError(MSG_PHONE_EMPTY, code="empty")
    if len(text) > _MAX_INPUT_LENGTH:
        raise IdentifierError(MSG_PHONE_LENGTH, code="length")
    value = text.strip()
    if not value:
        raise IdentifierError(MSG_PHONE_EMPTY, code="empty")
    if _PHONE_RE.fullmatch(value) is None:
        raise IdentifierError(MSG_PHONE_CHARACTERS, code="characters")
    digits = "".join(char for char in value if char in _DIGITS)
    if not _PHONE_MIN_DIGITS <= len(digits) <= _PHONE_MAX_DIGITS:
        raise IdentifierError(MSG_PHONE_LENGTH, code="length")
    return ("+" if value.startswith("+") else "") + digits
