"""Viewing conditions: what the participant's browser reports about the screen, checked strictly.

Recorded per participant (columns of `participants`, exported in participants.csv):
- on the consent POST, from hidden fields that `static/js/viewing.js` fills: the device pixel ratio
  (`device_pixel_ratio`), the viewport and the screen size in CSS pixels (`viewport_w/h`, `screen_w/h`) and
  whether the page was touched (`touch`);
- on the first image trial's POST: the rendered size of the image at each display scale, in CSS pixels, as the
  browser laid it out (`rendered_sizes`, JSON `{"1": [28.0, 28.0], "2": [56.0, 56.0], ...}`), and touch again;
- from the User-Agent header, only the browser family and the OS (`ua_browser`, `ua_os`): nothing finer, so
  nothing here fingerprints a participant.
A value that is missing, malformed or out of range is not stored (the participant goes on: a measurement never
blocks an answer). Without JavaScript nothing but the coarse user agent is recorded.
"""

from __future__ import annotations

import math
import re
from typing import Any

from app.errors import StudyUnavailable

MAX_CSS_PX = 20_000
DPR_RANGE = (0.25, 10.0)
_INT_RE = re.compile(r"[0-9]{1,5}", re.ASCII)
_NUM_RE = re.compile(r"[0-9]{1,5}(?:\.[0-9]{1,3})?", re.ASCII)
_SIZE_RE = re.compile(r"([0-9]{1,2}):([0-9.]{1,9})x([0-9.]{1,9})", re.ASCII)
MAX_SCALES = 16


def _int(value: str | None, lo: int = 1, hi: int = MAX_CSS_PX) -> int | None:
    if value is None or not _INT_RE.fullmatch(value):
        return None
    n = int(value)
    return n if lo <= n <= hi else None


def _num(value: str | None, lo: float, hi: float) -> float | None:
    if value is None or not _NUM_RE.fullmatch(value):
        return None
    x = float(value)
    return round(x, 3) if math.isfinite(x) and lo <= x <= hi else None


def _touch(value: str | None) -> bool | None:
    return {"1": True, "0": False}.get(value or "")


def screen_values(form: dict[str, str | None]) -> dict[str, Any]:
    """The consent form's measurements as participants columns; invalid or missing ones are left out."""
    values: dict[str, Any] = {
        "device_pixel_ratio": _num(form.get("dpr"), *DPR_RANGE),
        "viewport_w": _int(form.get("vw")),
        "viewport_h": _int(form.get("vh")),
        "screen_w": _int(form.get("sw")),
        "screen_h": _int(form.get("sh")),
        "touch": _touch(form.get("touch")),
    }
    return {k: v for k, v in values.items() if v is not None}


def rendered_sizes(value: str | None, scales: tuple[int, ...]) -> dict[str, list[float]] | None:
    """`1:28x28,2:56x56,4:112.5x112.5` -> {"1": [28.0, 28.0], ...}: every scale of the study once, or None."""
    if not value or len(value) > 400:
        return None
    sizes: dict[str, list[float]] = {}
    for part in value.split(","):
        m = _SIZE_RE.fullmatch(part)
        if m is None:
            return None
        scale, w, h = int(m.group(1)), _num(m.group(2), 0, MAX_CSS_PX), _num(m.group(3), 0, MAX_CSS_PX)
        if scale not in scales or w is None or h is None or str(scale) in sizes:
            return None
        sizes[str(scale)] = [w, h]
    return sizes if len(sizes) == len(scales) <= MAX_SCALES else None


# --- the coarse user agent -------------------------------------------------------------------------------

_BROWSERS = (  # the first that matches wins: Edge and Opera also say "Chrome", Chrome also says "Safari"
    ("edge", ("Edg/", "EdgA/", "EdgiOS/", "Edge/")),
    ("opera", ("OPR/", "Opera")),
    ("samsung", ("SamsungBrowser/",)),
    ("firefox", ("Firefox/", "FxiOS/")),
    ("chrome", ("Chrome/", "CriOS/", "Chromium/")),
    ("safari", ("Safari/",)),
)
_SYSTEMS = (
    ("ios", ("iPhone", "iPad", "iPod")),
    ("android", ("Android",)),
    ("chromeos", ("CrOS",)),
    ("windows", ("Windows",)),
    ("macos", ("Macintosh", "Mac OS X")),
    ("linux", ("Linux", "X11")),
)


def coarse_user_agent(header: str | None) -> tuple[str, str]:
    """(browser family, OS) from a User-Agent header; "other" when unknown. Nothing else is kept."""
    ua = (header or "")[:1000]
    browser = next((name for name, marks in _BROWSERS if any(m in ua for m in marks)), "other")
    system = next((name for name, marks in _SYSTEMS if any(m in ua for m in marks)), "other")
    return browser, system


# --- the minimum viewport width, checked before assignment ----------------------------------------------


class ScreenCheckNeeded(Exception):
    """The study sets a minimum viewport width and this entry has not been measured yet."""

    def __init__(self, min_width: int) -> None:
        super().__init__(min_width)
        self.min_width = min_width


class ScreenTooSmall(StudyUnavailable):
    """The browser's viewport is narrower than the study's `min_viewport_width`: refused before assignment."""

    title = "This study needs a larger screen"

    def __init__(self, min_width: int, width: int, code: str | None) -> None:
        super().__init__(
            f"This study shows images that need a window at least {min_width} pixels wide; yours is {width}. "
            "If you are on a phone or tablet, turning it sideways may be enough (then press Check again); "
            "otherwise please open the study on a computer, or return it on Prolific.",
            reason="incompatible-device",
        )
        self.min_width, self.width, self.code = min_width, width, code


NOT_MEASURED = "nojs"


def measured_width(value: str | None) -> int | str | None:
    """The entry link's `lp_vw`: a width in CSS px, NOT_MEASURED (no JavaScript: let through), or None."""
    if value == NOT_MEASURED:
        return NOT_MEASURED
    return _int(value)


def check_screen(config: dict[str, Any] | None, width: int | str | None) -> None:
    """Raise unless the study has no minimum width, the width is enough, or it could not be measured."""
    min_width = (config or {}).get("min_viewport_width")
    if not min_width:
        return
    if width is None:
        raise ScreenCheckNeeded(int(min_width))
    if isinstance(width, int) and width < min_width:
        code = ((config or {}).get("completion_codes") or {}).get("incompatible_device")
        raise ScreenTooSmall(int(min_width), width, code)
