/*
 * Signpost — neutral exit, shared by the chat page and the privacy pages.
 *
 * Quick exit (the #quick-exit link, or Escape pressed twice within one second):
 *   1. tells the page it is leaving (event "signpost:exit", so pending replies are dropped),
 *   2. clears sessionStorage (session id, language, this tab's copy of the conversation),
 *   3. empties the page, so nothing of the chat stays on screen while the next site loads,
 *   4. location.replace(<body data-exit-url>): the chat's history entry is replaced, so Back
 *      does not return to it.
 *
 * Links marked data-nav="replace" (chat <-> privacy) also navigate with location.replace, so the
 * tab's history never holds more than one Signpost page and Quick exit really leaves the site.
 */
(function () {
  "use strict";

  var DEFAULT_EXIT_URL = "https://www.bbc.co.uk/weather";
  var DOUBLE_ESCAPE_MS = 1000;
  var leaving = false;
  var lastEscape = -Infinity;

  function exitUrl() {
    var wanted = (document.body && document.body.getAttribute("data-exit-url")) || DEFAULT_EXIT_URL;
    try {
      var url = new URL(wanted, window.location.href);
      if (url.protocol === "https:" || url.protocol === "http:") {
        return url.href;
      }
    } catch (e) {
      /* fall through to the default */
    }
    return DEFAULT_EXIT_URL;
  }

  function quickExit() {
    if (leaving) {
      return;
    }
    leaving = true;
    var target = exitUrl();
    window.SignpostExiting = true;
    try {
      window.dispatchEvent(new CustomEvent("signpost:exit"));
    } catch (e) {
      /* the page's own clean-up must never stop the exit */
    }
    try {
      window.sessionStorage.clear();
    } catch (e) {
      /* storage may be disabled; nothing to clear then */
    }
    document.title = "";
    if (document.body) {
      document.body.replaceChildren();
    }
    window.location.replace(target);
  }

  function onKeyDown(event) {
    if (event.key !== "Escape" || event.repeat) {
      return;
    }
    var now = Date.now();
    if (now - lastEscape <= DOUBLE_ESCAPE_MS) {
      event.preventDefault();
      quickExit();
      return;
    }
    lastEscape = now;
  }

  function onClick(event) {
    if (event.defaultPrevented || event.button !== 0 ||
        event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) {
      return;
    }
    var target = event.target instanceof Element ? event.target.closest("a") : null;
    if (!target) {
      return;
    }
    if (target.id === "quick-exit") {
      event.preventDefault();
      quickExit();
      return;
    }
    if (target.getAttribute("data-nav") === "replace") {
      event.preventDefault();
      window.location.replace(target.href);
    }
  }

  function init() {
    var link = document.getElementById("quick-exit");
    if (link) {
      link.href = exitUrl();
    }
  }

  // Capture phase: the shortcut works whatever has focus (the message box, a dialog, a button).
  document.addEventListener("keydown", onKeyDown, true);
  document.addEventListener("click", onClick, true);
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", init);
  } else {
    init();
  }

  window.SignpostExit = Object.freeze({ quickExit: quickExit, exitUrl: exitUrl });
})();
