"""Caption duels from the operator's pictures (`gap duels import-captions`): validated
line by line, stored in one go, served like procedural ones."""
from __future__ import annotations

import json

from PIL import Image
from gap.cli import main


def picture(path, color) -> str:
    Image.new("RGB", (40, 30), color).save(path)
    return path.name


def write(path, lines) -> None:
    path.write_text("\n".join(json.dumps(x) if not isinstance(x, str) else x for x in lines) + "\n")


def stored(db_url):
    import sqlite3

    con = sqlite3.connect(db_url.split("///", 1)[1])
    try:
        pairs = con.execute("SELECT prompt, source, gold, truth FROM duel_pairs ORDER BY id").fetchall()
        mimes = con.execute("SELECT mime FROM duel_images").fetchall()
    finally:
        con.close()
    return pairs, mimes


def test_import_captions(db_url, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("GAP_DATABASE_URL", db_url)
    red, blue, green = (picture(tmp_path / n, c) for n, c in (("red.png", "red"), ("blue.jpg", "blue"),
                                                               ("green.png", "green")))
    good = tmp_path / "duels.jsonl"
    write(good, [{"caption": "A red square", "image_0": blue, "image_1": red, "fits": 1, "gold": True},
                 {"caption": "Something green", "image_0": green, "image_1": blue, "fits": None}, ""])
    assert main(["duels", "import-captions", str(good)]) == 0
    assert "2 new caption duels" in capsys.readouterr().out
    pairs, mimes = stored(db_url)
    assert pairs == [("A red square", "gold", 1, "a"), ("Something green", "imported", 0, None)]
    assert len(mimes) == 3
    assert main(["duels", "import-captions", str(good)]) == 0     # nothing twice
    assert "0 new caption duels (2 already stored)" in capsys.readouterr().out

    bad_lines = [
        ("not json", "line 2: not JSON"),
        ({"caption": "", "image_0": red, "image_1": blue}, "caption must not be empty"),
        ({"caption": "x", "image_0": red, "image_1": "missing.png"}, "cannot read missing.png"),
        ({"caption": "x", "image_0": red, "image_1": red}, "the same"),
        ({"caption": "x", "image_0": red, "image_1": blue, "gold": True}, "needs \"fits\""),
        ({"caption": "x", "image_0": red, "image_1": blue, "fits": 2}, "must be 0, 1 or null"),
        ({"caption": "x", "image_0": red, "image_1": "duels.jsonl"}, "duels.jsonl"),
    ]
    for line, message in bad_lines:
        bad = tmp_path / "bad.jsonl"
        write(bad, [{"caption": "fine", "image_0": green, "image_1": red, "fits": 0}, line])
        assert main(["duels", "import-captions", str(bad)]) == 2
        err = capsys.readouterr().err
        assert message in err and "nothing was stored" in err, (line, err)
    assert len(stored(db_url)[0]) == 2
