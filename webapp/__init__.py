"""Dash web app for browsing weight-sparse transformers, their training curves and pruned circuits.

Pages live in `webapp.pages` and stay thin: each builds a layout and wires callbacks to the pure
functions in `webapp.graph`, `webapp.figures`, `webapp.heatmap` and the cached data layer in
`webapp.data`. `app.py` at the repository root creates the Dash app.
"""
