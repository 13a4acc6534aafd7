"""The EHR's style colours are used only where text stays readable (WCAG AA, 4.5:1): a light
highlight would make links and button labels too faint (axe-core's colour-contrast rule)."""

from __future__ import annotations

import pytest

from smart_app.style import style_vars
from tests.support.smart_stub import SMART_STYLE


def test_the_stub_ehrs_light_highlight_is_not_used():
    assert style_vars(SMART_STYLE) == {"--smart-bg": SMART_STYLE["color_background"],
                                       "--smart-text": SMART_STYLE["color_text"],
                                       "--smart-font": SMART_STYLE["font_family_body"]}


@pytest.mark.parametrize("style,kept", [
    ({"color_highlight": "#0b57a4"}, {"--smart-accent"}),
    ({"color_highlight": "rgb(11, 87, 164)"}, {"--smart-accent"}),
    ({"color_highlight": "#69b5ce"}, set()),  # 2.3:1 under white button text
    ({"color_highlight": "#0b57a480"}, set()),  # translucent: cannot be checked
    ({"color_background": "#fafafa", "color_text": "#111"}, {"--smart-bg", "--smart-text"}),
    ({"color_background": "#222", "color_text": "#333"}, set()),  # dark on dark
    ({"color_background": "#222"}, set()),  # the app's dark text on a dark background
    ({"color_background": "#000", "color_text": "#fff", "color_highlight": "#0b57a4"},
     {"--smart-bg", "--smart-text"}),  # a dark-blue link on black is unreadable
])
def test_colours_are_kept_only_when_readable(style, kept):
    assert set(style_vars(style)) == kept
