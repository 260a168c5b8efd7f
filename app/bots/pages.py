"""Read a participant page as a browser would: which page it is, its form, the options a person can choose.

Only what the page shows is used (visible label texts, the attention check's instruction, the image URL); the
bot learns nothing the server does not show a participant.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

from selectolax.lexbor import LexborHTMLParser, LexborNode


class PageError(Exception):
    """The server showed something a participant could not go on from."""


@dataclass
class Page:
    kind: str  # screen-check, consent, instructions, trial, demographics, finish, message
    url: str
    action: str | None = None  # the main form's action
    hidden: dict[str, str] = field(default_factory=dict)
    labels: list[tuple[str, str]] = field(default_factory=list)  # (value, visible text), for trials
    confidences: list[str] = field(default_factory=list)
    image_url: str | None = None  # None on an attention check
    instruction: str = ""  # the attention check's instruction, as shown
    selects: dict[str, list[str]] = field(default_factory=dict)  # demographics: name -> option values
    numbers: dict[str, tuple[int, int]] = field(default_factory=dict)  # name -> (min, max)
    completion_code: str | None = None
    title: str = ""
    text: str = ""


def _text(node: LexborNode | None) -> str:
    return " ".join((node.text(separator=" ") if node is not None else "").split())


def _option_text(label: LexborNode) -> str:
    """The visible text of a label option without its key hint (<kbd>)."""
    for kbd in label.css("kbd"):
        kbd.decompose()
    return _text(label)


def parse(html: str, url: str) -> Page:
    tree = LexborHTMLParser(html)
    main = tree.css_first("main[data-page]")
    kind = main.attributes.get("data-page") if main is not None else None
    page = Page(kind=kind or "message", url=url, title=_text(tree.css_first("title")), text=_text(main))
    form = tree.css_first("form[method=post]")
    if form is None and page.kind == "screen-check":  # the window-width check before assignment is a GET form
        form = tree.css_first("form[method=get]")
    if form is not None:
        page.action = form.attributes.get("action")
        for inp in form.css("input[type=hidden]"):
            name = inp.attributes.get("name")
            if name:
                page.hidden[name] = inp.attributes.get("value") or ""
    if page.kind == "trial" and form is not None:
        for label in form.css("label"):
            radio = label.css_first("input[type=radio]")
            if radio is None:
                continue
            name, value = radio.attributes.get("name"), radio.attributes.get("value") or ""
            if name == "label":
                page.labels.append((value, _option_text(label)))
            elif name == "confidence":
                page.confidences.append(value)
        img = form.css_first("img[src]")
        page.image_url = img.attributes.get("src") if img is not None else None
        legend = form.css_first("fieldset legend")
        page.instruction = _text(legend)
        strong = legend.css_first("strong") if legend is not None else None
        if strong is not None:
            page.instruction = _text(strong)
        if not page.labels or not page.confidences:
            raise PageError(f"the trial page at {url} has no label or confidence choices")
    if page.kind == "demographics" and form is not None:
        for sel in form.css("select[name]"):
            values = [o.attributes.get("value") or "" for o in sel.css("option")]
            page.selects[sel.attributes["name"] or ""] = [v for v in values if v]
        for inp in form.css("input[type=number][name]"):
            lo, hi = inp.attributes.get("min") or "18", inp.attributes.get("max") or "99"
            page.numbers[inp.attributes["name"] or ""] = (int(lo), int(hi))
    if page.kind == "finish":
        link = tree.css_first("#complete-link")
        href = link.attributes.get("href") if link is not None else None
        if href:
            codes = parse_qs(urlsplit(href).query).get("cc")
            page.completion_code = codes[0] if codes else None
    return page


def attention_target(page: Page) -> str | None:
    """The value of the label the attention check asks for: the option whose visible text it names."""
    wanted = page.instruction.strip().lower()
    exact = [v for v, text in page.labels if text.strip().lower() == wanted]
    if exact:
        return exact[0]
    named = sorted(((len(t), v) for v, t in page.labels if t.strip() and t.strip().lower() in wanted), reverse=True)
    return named[0][1] if named else None
