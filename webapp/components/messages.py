"""Message boxes for errors and notices shown on a page, one alert per message."""

from __future__ import annotations

import dash_bootstrap_components as dbc
from dash import html

from webapp.data import store_relative


def message_list(messages: list[str], color: str = "warning") -> list:
    """Build one dismissable alert per message (an empty list for no messages).

    Absolute store paths in a message become store-relative (`webapp.data.store_relative`).
    """
    return [
        dbc.Alert(store_relative(message), color=color, dismissable=True, className="py-2 mb-2")
        for message in messages
    ]


def notice(message: str) -> html.Div:
    """Build a muted paragraph for an empty state, such as 'select a node'."""
    return html.Div(message, className="text-muted fst-italic my-2")
