"""The interface's Textual themes; each names the colour map its heatmaps use."""

from __future__ import annotations

from textual.theme import Theme

DARK = Theme(
    name="semiotui-dark",
    primary="#5FA8D3",
    secondary="#9D8DF1",
    accent="#F4A259",
    foreground="#E0E3E8",
    background="#14161B",
    surface="#1C1F26",
    panel="#262A33",
    success="#7BC67B",
    warning="#F4C542",
    error="#E5575B",
    dark=True,
    variables={"heatmap-colormap": "inferno", "footer-key-foreground": "#F4A259"},
)

LIGHT = Theme(
    name="semiotui-light",
    primary="#1F6FA8",
    secondary="#6A4FC4",
    accent="#B8560F",
    foreground="#1D2127",
    background="#F7F7F5",
    surface="#FFFFFF",
    panel="#E8E9EC",
    success="#2E7D32",
    warning="#9A6700",
    error="#C62828",
    dark=False,
    variables={"heatmap-colormap": "viridis", "footer-key-foreground": "#B8560F"},
)

HIGH_CONTRAST = Theme(
    name="semiotui-high-contrast",
    primary="#FFFFFF",
    secondary="#00FFFF",
    accent="#FFFF00",
    foreground="#FFFFFF",
    background="#000000",
    surface="#000000",
    panel="#000000",
    success="#00FF00",
    warning="#FFFF00",
    error="#FF4040",
    boost="#FFFFFF",
    dark=True,
    variables={
        "heatmap-colormap": "hot",
        "footer-key-foreground": "#FFFF00",
        "block-cursor-background": "#FFFF00",
        "block-cursor-foreground": "#000000",
        "block-cursor-blurred-background": "#808000",
        "border": "#FFFFFF",
        "border-blurred": "#C0C0C0",
    },
)

THEMES: dict[str, Theme] = {theme.name: theme for theme in (DARK, LIGHT, HIGH_CONTRAST)}
DEFAULT_THEME = DARK.name
