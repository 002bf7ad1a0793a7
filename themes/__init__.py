"""Textual themes and heatmap colour maps."""
