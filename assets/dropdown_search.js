/*
 * Send typing in an open Dash dropdown to its search box.
 *
 * Dash 4.4.1's Dropdown (single value) focuses the selected option when its menu opens. The
 * characters typed next go to that option, so the list is not filtered. With no value selected,
 * the search box gets the focus and filtering works. This capture-phase listener moves the focus
 * to the search box before a printable key is handled, so the browser types the character there.
 */
(function () {
    document.addEventListener(
        "keydown",
        function (event) {
            if (event.key.length !== 1 || event.ctrlKey || event.metaKey || event.altKey) {
                return;
            }
            var target = event.target;
            if (!(target instanceof Element) || target.classList.contains("dash-dropdown-search")) {
                return;
            }
            var content = target.closest(".dash-dropdown-content");
            var search = content && content.querySelector("input.dash-dropdown-search");
            if (search) {
                search.focus();
            }
        },
        true
    );
})();
