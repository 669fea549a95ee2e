"""Simulated describers with a *known* accuracy per attribute (SPEC §3.5): players who
play the describe round through the real HTTP API, and a stand-in describing model.

Why: the comparison of model and crowd descriptions must rank sources the way their
accuracies say; with describers whose accuracy per attribute is set, that is
testable. Each describer sees an image only through its ground-truth scene (the
simulator maps the opaque image id of the URL to `scene_json`, like lab/simulation.py),
states each attribute truly with its accuracy and otherwise says a wrong value, in
varied sentences. Players also rate other players' descriptions: a description fits
when it names the largest object's true colour and shape.
"""
from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import logging
import random
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from game.attributes import COUNT_BANDS, MANY, scene_attributes
from lab.simulation import ApiError, Client, load_scenes
from models.describe import Description
from models.scenes import COLORS, SHAPES, Scene

log = logging.getLogger("lab.describers")

VALUES: dict[str, list[str]] = {
    "largest_color": list(COLORS), "largest_shape": list(SHAPES), "largest_side": ["left", "right"],
    "largest_half": ["top", "bottom"], "count": [label for _, label in COUNT_BANDS] + [MANY],
    "has_text": ["yes", "no"],
}
COUNT_WORDS = {"1": "one shape", "2": "two shapes", "3": "three shapes", "4-6": "a handful of shapes",
               "7-8": "quite a few shapes", "9+": "lots of shapes"}
OPENERS = ["I see", "There is", "The picture shows", "It shows", "Here we have"]


@dataclass(frozen=True)
class DescriberProfile:
    """Accuracy per attribute (missing attributes: `default`)."""

    name: str
    accuracy: dict[str, float] = field(default_factory=dict)
    default: float = 0.5

    def p(self, attribute: str) -> float:
        return self.accuracy.get(attribute, self.default)


def stated_values(scene: Scene, profile: DescriberProfile, rng: random.Random) -> dict[str, str]:
    """What the describer says of each attribute: the truth with its accuracy, else a wrong value."""
    truth = scene_attributes(scene)
    out = {}
    for attribute, values in VALUES.items():
        true = truth.get(attribute)
        wrong = [v for v in values if v != true]
        out[attribute] = true if (true is not None and rng.random() < profile.p(attribute)) else rng.choice(wrong)
    return out


def write_description(said: dict[str, str], rng: random.Random) -> str:
    """One or two sentences stating the values, in a varied order and wording."""
    letters = ("Some shapes carry letters." if said["has_text"] == "yes" else "No letters anywhere.")
    main = (f"{rng.choice(OPENERS)} {COUNT_WORDS[said['count']]}; the biggest is a {said['largest_color']} "
            f"{said['largest_shape']} at the {said['largest_half']} {said['largest_side']}.")
    return f"{main} {letters}" if rng.random() < 0.5 else f"{letters} {main}"


def fits(scene: Scene, text: str) -> bool:
    """A simulated rater's judgement: the text names the largest object's true colour and shape."""
    truth = scene_attributes(scene)
    words = set(text.lower().replace(";", " ").replace(".", " ").replace(",", " ").split())
    return truth.get("largest_color") in words and truth.get("largest_shape") in words


class SimulatedDescribingModel:
    """A describing model with a set accuracy per attribute: it knows scenes by image hash
    (registered from the pool) and writes like the simulated players. `compute_seconds`
    is its measured time (it does no real work, so it is tiny)."""

    def __init__(self, profile: DescriberProfile, scenes_by_sha: dict[str, Scene], seed: int = 0,
                 model_id: str = "simulated-describer") -> None:
        self.profile = profile
        self.scenes = scenes_by_sha
        self.seed = seed
        self.model_id = model_id

    async def describe(self, image: bytes) -> Description:
        started = time.perf_counter()
        sha = hashlib.sha256(image).hexdigest()
        rng = random.Random(f"{self.seed}:{sha}")
        text = write_description(stated_values(self.scenes[sha], self.profile, rng), rng)
        return Description(text, self.model_id, time.perf_counter() - started)

    async def answer(self, image: bytes, question: str, taint: bool):  # the VQAModel half: never used here
        raise NotImplementedError("a simulated describer only describes")

    async def aclose(self) -> None:
        return None


@dataclass
class _Player:
    telegram_id: int
    kind: str = "describer"


async def play_describer(client: Client, profile: DescriberProfile, scenes: dict[str, Scene], rng: random.Random,
                         images: int, ratings: int) -> dict[str, int]:
    """Describe `images` images (one task each) and rate up to `ratings` others' descriptions."""
    done = {"described": 0, "rated": 0}
    for _ in range(images):
        try:
            task = await client.call("POST", "/api/describe")
        except ApiError as exc:
            if exc.status == 503:  # nothing left to describe for this player
                break
            raise
        scene = scenes[task["image"]["url"].rsplit("/", 1)[1]]
        text = write_description(stated_values(scene, profile, rng), rng)
        await client.call("POST", f"/api/describe/{task['task_id']}",
                          {"request_id": f"d-{rng.getrandbits(64):x}", "text": text})
        done["described"] += 1
    for _ in range(ratings):
        try:
            item = await client.call("GET", "/api/descriptions/next")
        except ApiError as exc:
            if exc.status == 404:
                break
            raise
        scene = scenes[item["image"]["url"].rsplit("/", 1)[1]]
        await client.call("POST", f"/api/descriptions/{item['description_id']}/rating",
                          {"request_id": f"r-{rng.getrandbits(64):x}", "fits": fits(scene, item["text"])})
        done["rated"] += 1
    return done


async def simulate_describers(server: str, bot_token: str, database_url: str, profile: DescriberProfile,
                              players: int, *, images_each: int = 5, ratings_each: int = 5, seed: int = 0,
                              concurrency: int = 8) -> dict[str, int]:
    """`players` simulated describers play the describe round through the HTTP API at `server`."""
    scenes = await load_scenes(database_url)
    totals = {"described": 0, "rated": 0}
    gate = asyncio.Semaphore(concurrency)
    async with aiohttp.ClientSession() as http:
        async def one(i: int) -> None:
            async with gate:
                client = Client(http, server, bot_token, _Player(telegram_id=8_000_000 + seed * 100_000 + i))
                got = await play_describer(client, profile, scenes, random.Random(f"{seed}:{i}"),
                                           images_each, ratings_each)
                for k, v in got.items():
                    totals[k] += v

        await asyncio.gather(*(one(i) for i in range(players)))
    return totals


def parse_accuracy(text: str) -> dict[str, float]:
    """`largest_color=0.9,count=0.5` → {attribute: accuracy}; unknown attributes are refused."""
    out = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, _, value = part.partition("=")
        if name not in VALUES:
            raise ValueError(f"unknown attribute {name!r} (known: {', '.join(VALUES)})")
        p = float(value)
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"accuracy of {name} must be within 0..1")
        out[name] = p
    return out


def run_describers_cli(args: argparse.Namespace, settings: Any) -> int:
    """`gap simulate-describe`: simulated describers against a running server."""
    token = settings.bot_token.get_secret_value() if settings.bot_token else None
    if not token:
        print("gap simulate-describe: GAP_BOT_TOKEN must be the server's bot token", file=sys.stderr)
        return 2
    try:
        profile = DescriberProfile("crowd", parse_accuracy(args.accuracy), default=args.default_accuracy)
    except ValueError as exc:
        print(f"gap simulate-describe: {exc}", file=sys.stderr)
        return 2
    totals = asyncio.run(simulate_describers(args.server, token, settings.database_url, profile, args.players,
                                             images_each=args.images, ratings_each=args.ratings, seed=args.seed))
    print(json.dumps(totals))
    return 0
