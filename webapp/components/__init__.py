"""Reusable Dash component builders: navbar, token heatmap, node card, messages."""
