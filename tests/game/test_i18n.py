"""The player's language: every marked string is in every catalogue, plural forms follow
each language's rule, nothing visible on the Russian page is left in English, and
the language is chosen from Telegram's language_code with English as the fallback."""
from __future__ import annotations

import re
import string
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po

from game import i18n
from settings import REPO_ROOT, Settings

MAKEFILE = REPO_ROOT / "Makefile"


def keywords() -> dict[str, tuple[int, ...] | None]:
    """The extraction keywords of `make messages` (one list for the Makefile and this test)."""
    line = next(l for l in MAKEFILE.read_text().splitlines() if l.startswith("KEYWORDS :="))
    out: dict[str, tuple[int, ...] | None] = {}
    for spec in re.findall(r"-k (\S+)", line):
        name, _, args = spec.partition(":")
        out[name] = tuple(int(a) for a in args.split(",")) if args else None
    return out


def extracted() -> dict[object, set[str]]:
    """Every marked msgid in game/, bot/ and webapp/ (Python, the page template, the page's JS)."""
    method_map = [("game/**.py", "python"), ("bot/**.py", "python"), ("webapp/**.py", "python"),
                  ("webapp/templates/**.html", "jinja2"), ("webapp/static/**.js", "javascript")]
    found: dict[object, set[str]] = {}
    for filename, _lineno, message, _comments, _context in extract_from_dir(
            str(REPO_ROOT), method_map, keywords=keywords(), strip_comment_tags=True):
        found.setdefault(message, set()).add(filename)
    return found


def placeholders(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


@pytest.mark.parametrize("lang", [lang for lang in i18n.SUPPORTED if lang != i18n.DEFAULT])
def test_every_marked_string_is_translated(lang):
    with (i18n.LOCALES_DIR / lang / "LC_MESSAGES" / "messages.po").open("rb") as fh:
        catalog = read_po(fh, locale=lang)
    messages = extracted()
    assert len(messages) > 150  # the page, its JS, the bot and the core's errors
    problems = []
    for msgid, files in messages.items():
        entry = catalog.get(msgid)
        if entry is None or entry.fuzzy:
            problems.append(f"missing: {msgid!r} ({', '.join(sorted(files))})")
            continue
        forms = entry.string if isinstance(entry.string, tuple) else (entry.string,)
        if isinstance(msgid, tuple) and len(forms) != catalog.num_plurals:
            problems.append(f"needs {catalog.num_plurals} plural forms: {msgid!r}")
        source = placeholders(msgid[0] if isinstance(msgid, tuple) else msgid)
        for form in forms:
            if not form:
                problems.append(f"empty: {msgid!r}")
            elif placeholders(form) != source:
                problems.append(f"placeholders differ: {msgid!r} -> {form!r}")
    assert problems == []


def test_no_compiled_catalogues_are_kept_in_git():
    """A fresh clone works from the .po files alone (compiled in memory on first use)."""
    tracked = subprocess.run(["git", "ls-files", "*.mo"], cwd=REPO_ROOT, capture_output=True, text=True).stdout
    assert tracked.strip() == ""
    assert i18n.gettext("ru", "Play") == "Играть"


@pytest.mark.parametrize("n,word", [(1, "картинка"), (2, "картинки"), (4, "картинки"), (5, "картинок"),
                                    (11, "картинок"), (21, "картинка"), (22, "картинки"), (112, "картинок")])
def test_russian_plural_forms(n, word):
    assert i18n.ngettext("ru", "{n} picture", "{n} pictures", n) == f"{n} {word}"


@pytest.mark.parametrize("n,text", [(1, "1 picture"), (5, "5 pictures"), (0, "0 pictures")])
def test_english_plural_forms(n, text):
    assert i18n.ngettext("en", "{n} picture", "{n} pictures", n) == text


def test_plural_forms_for_the_page_cover_each_cldr_category():
    assert i18n.plural_forms("ru", "{n} picture", "{n} pictures") == {
        "one": "{n} картинка", "few": "{n} картинки", "many": "{n} картинок", "other": "{n} картинок"}
    assert i18n.plural_forms("en", "{n} picture", "{n} pictures") == {"one": "{n} picture", "other": "{n} pictures"}


@pytest.mark.parametrize("code,lang", [("ru", "ru"), ("ru-RU", "ru"), ("RU", "ru"), ("en", "en"), ("en-GB", "en"),
                                       ("de", "en"), ("uk", "en"), ("", "en"), (None, "en"), ("x" * 300, "en"),
                                       ("--", "en"), ("ру", "en")])
def test_language_code_negotiation(code, lang):
    assert i18n.negotiate(code) == lang


@pytest.mark.parametrize("header,lang", [("ru", "ru"), ("ru-RU,ru;q=0.9,en;q=0.8", "ru"), ("en-US,ru;q=0.5", "en"),
                                         ("de-DE,ru;q=0.7", "ru"), ("de", "en"), ("", "en"), (None, "en"),
                                         ("ru;q=bad,en", "en")])
def test_accept_language(header, lang):
    assert i18n.from_accept_language(header) == lang


def test_game_errors_are_translated_with_their_parameters():
    from game.errors import Invalid
    from game.rules import clean_question

    with pytest.raises(Invalid) as caught:
        clean_question("x" * 301)
    assert caught.value.message == "question must be at most 300 characters (got 301)"
    assert i18n.error_text("ru", caught.value) == "поле «вопрос» должно быть не длиннее 300 симв. (сейчас 301)"
    assert i18n.error_text("en", caught.value) == caught.value.message


class VisibleText(HTMLParser):
    """Text a person reads or hears on the page: text nodes and the labelling attributes."""

    ATTRIBUTES = ("aria-label", "alt", "placeholder", "title")

    def __init__(self) -> None:
        super().__init__()
        self.texts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag, attrs):
        if tag in ("script", "style"):
            self._skip += 1
        self.texts += [value for name, value in attrs if name in self.ATTRIBUTES and value]

    def handle_endtag(self, tag):
        if tag in ("script", "style"):
            self._skip -= 1

    def handle_data(self, data):
        if not self._skip and data.strip():
            self.texts.append(data.strip())


def test_nothing_visible_on_the_russian_page_is_english():
    from webapp.page import load_static_assets, render_index

    parser = VisibleText()
    parser.feed(render_index(Settings(), load_static_assets(), "ru"))
    allowed = {"GAP", "Telegram"}
    english = [t for t in parser.texts if set(re.findall(r"[A-Za-z]{2,}", t)) - allowed]
    assert english == []
    assert "Играть" in parser.texts and "10 картинок" in parser.texts


def test_the_page_carries_its_js_messages_in_its_language():
    import json

    from webapp.page import load_static_assets, render_index

    html = render_index(Settings(), load_static_assets(), "ru")
    config = json.loads(re.search(r'data-config="([^"]*)"', html).group(1).replace("&#34;", '"')
                        .replace("&amp;", "&").replace("&#39;", "'").replace("&lt;", "<").replace("&gt;", ">"))
    assert config["i18n"]["lang"] == "ru"
    assert config["i18n"]["messages"]["Thinking…"] == "Думаю…"
    assert config["i18n"]["plurals"]["{n} find awaits validation by other players (+20 when confirmed)."]["few"] \
        == "{n} находки ждут проверки другими игроками (+20 за каждую, когда подтвердят)."
    assert Path(REPO_ROOT / "game" / "locales" / "ru" / "LC_MESSAGES" / "messages.po").exists()
