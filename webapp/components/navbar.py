"""The top navigation bar linking every registered page."""

from __future__ import annotations

import dash
import dash_bootstrap_components as dbc


def navbar() -> dbc.Navbar:
    """Build a navbar with one link per page in Dash's page registry, in registration order."""
    links = [
        dbc.NavItem(dbc.NavLink(page["name"], href=page["relative_path"], active="exact"))
        for page in dash.page_registry.values()
    ]
    return dbc.Navbar(
        dbc.Container(
            [dbc.NavbarBrand("Circuit sparsity viewer", href="/"), dbc.Nav(links, navbar=True)],
            fluid=True,
        ),
        color="dark",
        dark=True,
        className="mb-3",
    )
