"""The dashboard's colours meet WCAG AA (4.5:1) for the small text they carry."""

from __future__ import annotations

import re
from pathlib import Path

CSS = Path(__file__).resolve().parents[2] / "adapters" / "web" / "static" / "style.css"


def _luminance(hex_colour: str) -> float:
    channels = [int(hex_colour[i : i + 2], 16) / 255 for i in (0, 2, 4)]
    linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def contrast(a: str, b: str) -> float:
    """WCAG contrast ratio of two #rrggbb colours (without the #)."""
    high, low = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def test_pill_and_text_colours_meet_aa() -> None:
    """White pill text on every tone, and each tone as text on white, reach 4.5:1."""
    css = CSS.read_text()
    tones = dict(re.findall(r"--(green|amber|red|grey|ink): #([0-9a-f]{6})", css))
    assert set(tones) == {"green", "amber", "red", "grey", "ink"}
    for name, colour in tones.items():
        assert contrast(colour, "ffffff") >= 4.5, f"{name} #{colour} on white"
    assert contrast("1f2933", "f5f7f9") >= 4.5, "body text on the page background"
    assert contrast(tones["amber"], "fff4e0") >= 4.5, "amber status text on its tint"
    assert contrast(tones["green"], "e6f4ea") >= 4.5, "green status text on its tint"
