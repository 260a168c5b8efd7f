"""How a bot answers a trial: the true label, at random, or as a classifier sees the image it was shown.

Attention checks are answered as a person following the instructions would (truth, model) or at random
(random). The truth comes from the database by the image's public id: the pages never reveal it.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable

from app.bots.pages import Page, PageError, attention_target

RESPONDERS = ("truth", "random", "model")
# (label value, confidence value) for a trial page; may fetch the image through the bot's HTTP client.
Answer = tuple[str, str]
FetchImage = Callable[[str], Awaitable[bytes]]
# A classifier: PNG bytes -> (predicted label index, its probability).
Predict = Callable[[bytes], tuple[int, float]]


def _public_id(page: Page) -> str:
    assert page.image_url is not None
    return page.image_url.rstrip("/").rsplit("/", 1)[-1]


def _follow_instruction(page: Page) -> str:
    value = attention_target(page)
    if value is None:
        raise PageError(f"the attention check at {page.url} names no label that is offered: {page.instruction!r}")
    return value


class Responder:
    name = "base"

    async def answer(self, page: Page, rng: random.Random, fetch: FetchImage) -> Answer:
        raise NotImplementedError


class RandomResponder(Responder):
    name = "random"

    async def answer(self, page: Page, rng: random.Random, fetch: FetchImage) -> Answer:
        return rng.choice(page.labels)[0], rng.choice(page.confidences)


class TruthResponder(Responder):
    """The true label of every image (read from the database by public id), confidence 4 or 5."""

    name = "truth"

    def __init__(self, truth: dict[str, int]) -> None:
        self.truth = truth

    async def answer(self, page: Page, rng: random.Random, fetch: FetchImage) -> Answer:
        conf = rng.choice([c for c in page.confidences if c in ("4", "5")] or page.confidences)
        if page.image_url is None:
            return _follow_instruction(page), conf
        pid = _public_id(page)
        if pid not in self.truth:
            raise PageError(
                f"image {pid} is not in this command's database: do the server and `lpstudy bots` use the same "
                "--database-url?"
            )
        return str(self.truth[pid]), conf


class ModelResponder(Responder):
    """A classifier's prediction on the PNG the page showed; confidence from its probability (1-5)."""

    name = "model"

    def __init__(self, predict: Predict) -> None:
        self.predict = predict

    async def answer(self, page: Page, rng: random.Random, fetch: FetchImage) -> Answer:
        if page.image_url is None:
            return _follow_instruction(page), rng.choice(page.confidences)
        label, prob = self.predict(await fetch(page.image_url))
        conf = str(min(5, max(1, 1 + int(prob * 5))))
        values = {v for v, _ in page.labels}
        if str(label) not in values:
            raise PageError(f"the model predicted label {label}, which the page does not offer")
        return str(label), conf if conf in page.confidences else page.confidences[-1]
