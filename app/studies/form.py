"""A study config from the dashboard's form: the fields become TOML, validated exactly like an uploaded file."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping

INT_RE = re.compile(r"^-?\d{1,9}$")
FORM_FILENAME = "form"


def _str(v: str) -> str:
    return json.dumps(v, ensure_ascii=False)  # a JSON string is a valid TOML basic string


def _num_or_str(v: str) -> str:
    v = v.strip()
    return v if INT_RE.match(v) else _str(v)  # a non-number stays a string: the schema names the field


def toml_from_form(f: Mapping[str, str], conditions: list[str]) -> str:
    """Only the fields a form offers; everything else takes the schema's defaults (the paper's design)."""
    g = f.get
    lines = [
        f"slug = {_str(g('slug', '').strip())}",
        f"title = {_str(g('title', '').strip())}",
        f"dataset = {_str(g('dataset', ''))}",
        f"norm = {_str(g('norm', ''))}",
        f"conditions = [{', '.join(_str(c) for c in conditions)}]",
        f"trials_per_participant = {_num_or_str(g('trials_per_participant', '25'))}",
        f"participants_per_condition = {_num_or_str(g('participants_per_condition', ''))}",
        f"timeout_minutes = {_num_or_str(g('timeout_minutes', '60'))}",
        "",
        "[completion_codes]",
        f"completed = {_str(g('code_completed', '').strip())}",
        f"no_consent = {_str(g('code_no_consent', '').strip())}",
        f"failed_attention = {_str(g('code_failed_attention', '').strip())}",
    ]
    checks = g("attention_count", "0").strip()
    if checks not in ("", "0"):
        lines += ["", "[attention_checks]", "enabled = true", f"count = {_num_or_str(checks)}", "fail_threshold = 2"]
    if g("generate"):
        lines += [
            "",
            "[generation]",
            f"images = {_num_or_str(g('images', '75'))}",
            f"seed = {_num_or_str(g('seed', '0'))}",
            f"activate_when_ready = {'true' if g('activate_when_ready') else 'false'}",
        ]
    lines += [
        "",
        "[texts]",
        f"consent = {_str(g('consent', '').strip())}",
        f"instructions = {_str(g('instructions', '').strip())}",
    ]
    return "\n".join(lines) + "\n"
