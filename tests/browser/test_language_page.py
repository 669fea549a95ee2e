"""The Mini App in Russian for a player whose Telegram language_code is ru."""
from __future__ import annotations

import pytest
from playwright.sync_api import expect

from browser_support import _user_ids, sign

pytestmark = pytest.mark.browser


def test_a_russian_player_gets_the_russian_page(fast_server, new_page):
    init = sign({"id": next(_user_ids), "first_name": "Аня", "language_code": "ru"})
    page, watch = new_page()
    page.goto(fast_server.page_url(init))  # no ?lang: the page switches to the player's language once
    expect(page.locator("html")).to_have_attribute("lang", "ru")
    assert "lang=ru" in page.url and "tgWebAppData" in page.url
    page.get_by_role("button", name="Играть", exact=True).click()
    question = page.get_by_role("textbox", name="Ваш вопрос")
    expect(question).to_be_visible()
    expect(question).to_have_attribute("placeholder", "Спросите о картинке…")
    question.fill("What colour is the circle?")
    question.press("Enter")
    expect(page.get_by_role("button", name="Верно", exact=True)).to_be_visible()
    page.get_by_role("button", name="Неверно", exact=True).click()
    page.get_by_role("button", name="Отправить", exact=True).click()  # empty: refused on the page, in Russian
    expect(page.locator("#correction-error")).to_have_text("Напишите правильный ответ.")
    assert watch.errors == [] and watch.dialogs == [] and watch.csp == []
