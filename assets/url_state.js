// Write a page's view state into the address bar without a reload or a page re-render.
// A server callback builds the query string (webapp/url_state.py) and this function applies it.
// It uses history.replaceState, so the Back button leaves the page instead of stepping through edits.
window.dash_clientside = Object.assign({}, window.dash_clientside, {
    url_state: {
        replace_query: function (query) {
            if (typeof query !== "string") {
                return window.dash_clientside.no_update;
            }
            var url = window.location.pathname + query + window.location.hash;
            var current = window.location.pathname + window.location.search + window.location.hash;
            if (url !== current) {
                window.history.replaceState(window.history.state, "", url);
            }
            return query;
        },
    },
});
