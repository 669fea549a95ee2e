"""The player's language: gettext catalogues (Babel) chosen from Telegram's `language_code`.

Why gettext and not dicts in code: translators work on standard `.po` files with
tools they know, `pybabel extract` finds every marked string (Python, the page
template, the page's JS), and plural forms follow each language's own rule
(Russian has three: 1 картинка, 3 картинки, 5 картинок).

The `.po` files in `game/locales/<lang>/LC_MESSAGES/` are the only source: they
are compiled in memory on first use, so a fresh clone needs no build step and
no compiled `.mo` is kept in git. English is the source language (the msgids
themselves) and the fallback for every language we do not ship.

Only what people read goes through here: the model's questions and answers stay
in the model's language (the embedded model reads English).
"""
from __future__ import annotations

import functools
import io
from pathlib import Path
from typing import Any

from babel import Locale, UnknownLocaleError
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.plural import PluralRule
from babel.support import NullTranslations, Translations

LOCALES_DIR = Path(__file__).resolve().parent / "locales"
DOMAIN = "messages"
DEFAULT = "en"
SUPPORTED = ("en", "ru")


def N_(message: str) -> str:
    """Mark a string for the catalogue without translating it here (it is translated where shown)."""
    return message


def negotiate(code: str | None) -> str:
    """A supported language for a Telegram `language_code` ("ru", "ru-RU", "pt-br"), else English."""
    if not code or not isinstance(code, str):
        return DEFAULT
    try:
        language = Locale.parse(code.strip().replace("-", "_")).language
    except (ValueError, UnknownLocaleError):
        return DEFAULT
    return language if language in SUPPORTED else DEFAULT


def from_accept_language(header: str | None) -> str:
    """The best supported language of an HTTP Accept-Language header, else English."""
    best, best_q = DEFAULT, -1.0
    for part in (header or "").split(",")[:20]:
        tag, _, params = part.strip().partition(";")
        q = 1.0
        if params.strip().startswith("q="):
            try:
                q = float(params.strip()[2:])
            except ValueError:
                continue
        language = negotiate(tag) if tag and tag != "*" else DEFAULT
        if (language != DEFAULT or tag.lower().startswith("en")) and q > best_q:
            best, best_q = language, q
    return best


@functools.cache
def translations(lang: str) -> NullTranslations:
    """The compiled catalogue of `lang` (English: the msgids themselves)."""
    po = LOCALES_DIR / lang / "LC_MESSAGES" / f"{DOMAIN}.po"
    if lang == DEFAULT or not po.exists():
        return NullTranslations()
    with po.open("rb") as fh:
        catalog = read_po(fh, locale=lang, domain=DOMAIN)
    compiled = io.BytesIO()
    write_mo(compiled, catalog)
    compiled.seek(0)
    return Translations(compiled, domain=DOMAIN)


def gettext(lang: str, message: str, **params: Any) -> str:
    """`message` in `lang`, with `{named}` parameters filled in."""
    text = translations(lang).gettext(message)
    return text.format(**params) if params else text


def ngettext(lang: str, singular: str, plural: str, n: int, **params: Any) -> str:
    """The form for `n` in `lang` ("{n} picture" / "{n} pictures"); `{n}` is filled in too."""
    return translations(lang).ngettext(singular, plural, n).format(n=n, **params)


def error_text(lang: str, error: Any) -> str:
    """A game error (game/errors.py) in `lang`: its template translated, then its parameters
    filled in (string parameters such as a field name are translated too)."""
    template = getattr(error, "template", None) or str(error)
    params = {key: gettext(lang, value) if isinstance(value, str) else value
              for key, value in (getattr(error, "params", None) or {}).items()}
    return gettext(lang, template, **params)


def plural_forms(lang: str, singular: str, plural: str) -> dict[str, str]:
    """For the page's JS: the form of each CLDR plural category of `lang`
    ({"one": "{n} picture", "other": "{n} pictures"}), which the page picks with
    `Intl.PluralRules` (no code from the server is evaluated: the CSP forbids it)."""
    rule: PluralRule = Locale.parse(lang).plural_form
    samples: dict[str, int] = {}
    for n in range(0, 200):
        samples.setdefault(rule(n), n)
    forms = {tag: translations(lang).ngettext(singular, plural, n) for tag, n in samples.items()}
    forms.setdefault("other", translations(lang).ngettext(singular, plural, 5))
    return forms
