// Write a page's view state into the address bar without a reload or a page re-render.
// A server callback builds the query string (webapp/url_state.py) and this function applies it.
//
// History: a user's change of a control pushes a history entry, so Back undoes it. Writes without
// a user action replace the current entry instead: the first write after a page renders (which
// may normalise the URL) and the writes of callbacks that fill controls from other controls.
// Writes within PUSH_MERGE_MS of the last one also replace it, so typing a text or a burst of
// linked updates makes one entry, not one per keystroke.
// Back within a page reloads it from the URL: the Dash router would not re-render it, because
// history.pushState does not update its dcc.Location, so page and URL would disagree.
(function () {
    var PUSH_MERGE_MS = 1000;
    var userChanged = false;
    var lastWrite = 0;
    var shownPath = window.location.pathname;

    ["pointerdown", "keydown", "input", "change"].forEach(function (type) {
        document.addEventListener(type, function () { userChanged = true; }, true);
    });

    window.addEventListener("popstate", function (event) {
        var written = event.state && event.state.circuitViewerQuery;
        if (written && window.location.pathname === shownPath) {
            window.location.reload();
        }
        shownPath = window.location.pathname;
    });

    window.dash_clientside = Object.assign({}, window.dash_clientside, {
        url_state: {
            // `applied` is the query this page wrote last (null before its first write).
            replace_query: function (query, applied) {
                if (typeof query !== "string") {
                    return window.dash_clientside.no_update;
                }
                var url = window.location.pathname + query + window.location.hash;
                var current =
                    window.location.pathname + window.location.search + window.location.hash;
                var entry = window.history.state || {};
                // The popstate handler reloads only the history entries that carry this marker.
                var state = Object.assign({}, entry, { circuitViewerQuery: true });
                if (url !== current) {
                    var now = Date.now();
                    var firstWrite = applied === null || applied === undefined;
                    var push = !firstWrite && userChanged && now - lastWrite > PUSH_MERGE_MS;
                    if (push) {
                        window.history.pushState(state, "", url);
                    } else {
                        window.history.replaceState(state, "", url);
                    }
                    lastWrite = now;
                } else if (!entry.circuitViewerQuery) {
                    window.history.replaceState(state, "", current);
                }
                userChanged = false;
                shownPath = window.location.pathname;
                return query;
            },
        },
    });
})();
