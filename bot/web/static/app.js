/*
 * Signpost web chat.
 *
 * Talks to the gateway:
 *   POST /api/chat   {session_id, message, metadata: {channel, language_choice, browser_language,
 *                     audience_hint[, event: "session_start"]}}
 *                    -> 200 {messages: [{text, buttons: [{title, payload}]}], failsafe}
 *                    -> 400/413/429 {error, message}
 *   POST /api/forget {session_id} -> {ok: true}
 *
 * Rules kept here on purpose:
 *   - every piece of text reaches the page through textContent / createTextNode, never innerHTML;
 *     links in bot text are built with createElement and only for http(s) URLs;
 *   - the session id is random (crypto.randomUUID) and lives in sessionStorage, as do the
 *     language choice and this tab's copy of the conversation; Quick exit (exit.js) and
 *     "Delete my conversation" clear them.
 */
(function () {
  "use strict";

  var I18N = window.SIGNPOST_I18N;
  var MAX_LENGTH = 1000;
  var REQUEST_TIMEOUT_MS = 30000;
  var MAX_TRANSCRIPT = 200;
  var KEY_SESSION = "signpost.session_id";
  var KEY_LANGUAGE = "signpost.language";
  var KEY_TRANSCRIPT = "signpost.transcript";
  var UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

  // http(s) URLs, or bare domains with a known top-level domain ("actearly.uk",
  // "gov.uk/report-terrorism", "www.childline.org.uk"). A bare domain must not follow a letter,
  // digit, "@", "." or "/" (so e-mail addresses and parts of longer words are left alone).
  var URL_CHARS = "[A-Za-z0-9\\-._~:/?#\\[\\]@!$&()*+,;=%]";
  var TLDS = "uk|com|org|net|eu|de|fr|ie|ca|au|us|be|ch|at|nl|lu|nz|info|gov|int|app|io";
  var LINK_RE = new RegExp(
    "\\bhttps?://" + URL_CHARS + "+" +
    "|(?<![A-Za-z0-9@./_-])(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\\.)+(?:" + TLDS + ")" +
    "(?![A-Za-z0-9-])(?:/" + URL_CHARS + "*)?",
    "gi"
  );
  var TRAILING_PUNCTUATION = /[.,;:!?'"\])}]$/;

  var state = {
    language: "en",
    choice: null,          // only an explicit choice from the picker, else null
    sessionId: null,
    busy: false,
    controller: null,
    exiting: false,
    transcript: []
  };

  var el = {};

  /* ---------- storage (never throws; stops writing once Quick exit has started) ---------- */

  function storageGet(key) {
    try {
      return window.sessionStorage.getItem(key);
    } catch (e) {
      return null;
    }
  }

  function storageSet(key, value) {
    if (state.exiting || window.SignpostExiting) {
      return;
    }
    try {
      window.sessionStorage.setItem(key, value);
    } catch (e) {
      /* private mode / quota: the chat still works, it just won't survive a reload */
    }
  }

  function storageRemove(key) {
    try {
      window.sessionStorage.removeItem(key);
    } catch (e) {
      /* nothing to remove */
    }
  }

  /* ---------- session id ---------- */

  function newUuid() {
    if (window.crypto && typeof window.crypto.randomUUID === "function") {
      return window.crypto.randomUUID();
    }
    var bytes = window.crypto.getRandomValues(new Uint8Array(16));
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    var hex = Array.prototype.map.call(bytes, function (b) {
      return (b + 0x100).toString(16).slice(1);
    }).join("");
    return hex.slice(0, 8) + "-" + hex.slice(8, 12) + "-" + hex.slice(12, 16) + "-" +
      hex.slice(16, 20) + "-" + hex.slice(20);
  }

  function loadSessionId() {
    var stored = storageGet(KEY_SESSION);
    if (stored && UUID_RE.test(stored)) {
      return stored;
    }
    var fresh = newUuid();
    storageSet(KEY_SESSION, fresh);
    return fresh;
  }

  /* ---------- language ---------- */

  function t(key) {
    var table = I18N.strings[state.language] || {};
    if (Object.prototype.hasOwnProperty.call(table, key)) {
      return table[key];
    }
    return I18N.strings[I18N.fallback][key] || "";
  }

  function supported(code) {
    return typeof code === "string" && I18N.order.indexOf(code) !== -1;
  }

  function browserLanguage() {
    return (navigator.language || "").slice(0, 35) || null;
  }

  function initialLanguage() {
    var stored = storageGet(KEY_LANGUAGE);
    if (supported(stored)) {
      state.choice = stored;
      return stored;
    }
    var candidates = navigator.languages && navigator.languages.length ? navigator.languages : [navigator.language];
    for (var i = 0; i < candidates.length; i += 1) {
      var base = String(candidates[i] || "").toLowerCase().split("-")[0];
      if (supported(base)) {
        return base;
      }
    }
    return I18N.fallback;
  }

  function applyLanguage(code) {
    state.language = supported(code) ? code : I18N.fallback;
    var root = document.documentElement;
    root.lang = state.language;
    root.dir = I18N.rtl.indexOf(state.language) !== -1 ? "rtl" : "ltr";
    document.title = t("title");

    document.querySelectorAll("[data-i18n]").forEach(function (node) {
      node.textContent = t(node.getAttribute("data-i18n"));
    });
    document.querySelectorAll("[data-i18n-placeholder]").forEach(function (node) {
      node.setAttribute("placeholder", t(node.getAttribute("data-i18n-placeholder")));
    });
    document.querySelectorAll("[data-i18n-label]").forEach(function (node) {
      node.setAttribute("aria-label", t(node.getAttribute("data-i18n-label")));
    });
    el.privacyLink.href = "/privacy?lang=" + encodeURIComponent(state.language);
    el.language.value = state.language;
    updateCounter();
  }

  /* ---------- building messages (textContent only) ---------- */

  function trimUrl(raw) {
    var url = raw;
    while (url.length && TRAILING_PUNCTUATION.test(url)) {
      var last = url.charAt(url.length - 1);
      if (last === ")" && (url.split("(").length > url.split(")").length - 1)) {
        break; // balanced parentheses belong to the URL, e.g. ..._(disambiguation)
      }
      url = url.slice(0, -1);
    }
    return url;
  }

  function safeHref(text) {
    var candidate = /^https?:\/\//i.test(text) ? text : "https://" + text;
    try {
      var url = new URL(candidate);
      if ((url.protocol === "https:" || url.protocol === "http:") && url.hostname.indexOf(".") > 0) {
        return url.href;
      }
    } catch (e) {
      /* not a URL after all */
    }
    return null;
  }

  function makeLink(text, href) {
    var a = document.createElement("a");
    a.href = href;
    a.rel = "noopener noreferrer";
    a.target = "_blank";
    a.className = "msg__link";
    a.appendChild(document.createTextNode(text));
    var hint = document.createElement("span");
    hint.className = "visually-hidden";
    hint.setAttribute("data-i18n", "newTab");
    hint.textContent = " " + t("newTab");
    a.appendChild(hint);
    return a;
  }

  // Appends `text` to `parent`, turning URLs and bare domains into safe links.
  function appendLinkified(parent, text) {
    var last = 0;
    LINK_RE.lastIndex = 0;
    var match;
    while ((match = LINK_RE.exec(text)) !== null) {
      var found = trimUrl(match[0]);
      var href = found ? safeHref(found) : null;
      if (!href) {
        continue;
      }
      if (match.index > last) {
        parent.appendChild(document.createTextNode(text.slice(last, match.index)));
      }
      parent.appendChild(makeLink(found, href));
      last = match.index + found.length;
      LINK_RE.lastIndex = last;
    }
    if (last < text.length) {
      parent.appendChild(document.createTextNode(text.slice(last)));
    }
  }

  function speakerLabel(key) {
    var label = document.createElement("span");
    label.className = "visually-hidden";
    label.setAttribute("data-i18n", key);
    label.textContent = t(key) + " ";
    return label;
  }

  function cleanButtons(buttons) {
    if (!Array.isArray(buttons)) {
      return [];
    }
    return buttons.filter(function (b) {
      return b && typeof b.title === "string" && b.title.trim() &&
        typeof b.payload === "string" && b.payload.trim();
    }).map(function (b) {
      return { title: b.title, payload: b.payload };
    });
  }

  function renderQuickReplies(buttons) {
    var group = document.createElement("div");
    group.className = "quick-replies";
    group.setAttribute("role", "group");
    group.setAttribute("data-i18n-label", "suggested");
    group.setAttribute("aria-label", t("suggested"));
    buttons.forEach(function (b) {
      var button = document.createElement("button");
      button.type = "button";
      button.className = "quick-reply";
      button.dir = "auto";
      button.textContent = b.title;
      button.addEventListener("click", function () {
        if (state.busy) {
          return;
        }
        sendMessage(b.payload, b.title);
        el.input.focus();
      });
      group.appendChild(button);
    });
    return group;
  }

  function renderEntry(entry, withButtons) {
    var wrap = document.createElement("div");
    wrap.className = "msg msg--" + entry.from + (entry.failsafe ? " msg--failsafe" : "");
    wrap.appendChild(speakerLabel(entry.from === "user" ? "speakerUser" : "speakerBot"));
    var body = document.createElement("p");
    body.className = "msg__text";
    body.dir = "auto";
    if (entry.from === "bot") {
      appendLinkified(body, entry.text);
    } else {
      body.textContent = entry.text;
    }
    if (entry.text) {
      wrap.appendChild(body);
    }
    if (withButtons && entry.buttons && entry.buttons.length) {
      wrap.appendChild(renderQuickReplies(entry.buttons));
    }
    el.log.appendChild(wrap);
    return wrap;
  }

  function saveTranscript() {
    if (state.transcript.length > MAX_TRANSCRIPT) {
      state.transcript = state.transcript.slice(-MAX_TRANSCRIPT);
    }
    storageSet(KEY_TRANSCRIPT, JSON.stringify(state.transcript));
  }

  function addEntry(entry) {
    state.transcript.push(entry);
    saveTranscript();
    return renderEntry(entry, true);
  }

  function removeQuickReplies() {
    el.log.querySelectorAll(".quick-replies").forEach(function (node) {
      node.remove();
    });
  }

  function addNotice(text, withEmergency) {
    var wrap = document.createElement("div");
    wrap.className = "msg msg--notice";
    var body = document.createElement("p");
    body.className = "msg__text";
    body.dir = "auto";
    body.textContent = text;
    wrap.appendChild(body);
    if (withEmergency) {
      var intro = document.createElement("p");
      intro.className = "msg__text";
      intro.textContent = t("emergencyIntro");
      wrap.appendChild(intro);
      var list = document.createElement("ul");
      list.className = "emergency";
      [["999", "emergencyUK"], ["112", "emergencyEU"], ["911", "emergencyNA"]].forEach(function (pair) {
        var item = document.createElement("li");
        var call = document.createElement("a");
        call.href = "tel:" + pair[0];
        call.className = "emergency__number";
        call.textContent = pair[0];
        item.appendChild(call);
        var where = document.createElement("span");
        where.setAttribute("data-i18n", pair[1]);
        where.textContent = t(pair[1]);
        item.appendChild(document.createTextNode(" "));
        item.appendChild(where);
        list.appendChild(item);
      });
      wrap.appendChild(list);
    }
    el.log.appendChild(wrap);
    scrollToShow(wrap, "nearest");
    return wrap;
  }

  function scrollToShow(node, block) {
    var reduce = window.matchMedia && window.matchMedia("(prefers-reduced-motion: reduce)").matches;
    node.scrollIntoView({ block: block, behavior: reduce ? "auto" : "smooth" });
  }

  var announceTimer = null;

  // Polite status message (role="status"); an empty text clears it.
  function announce(text) {
    window.clearTimeout(announceTimer);
    el.status.textContent = "";
    if (text) {
      // Set after a tick so that screen readers also announce a text repeated from last time.
      announceTimer = window.setTimeout(function () {
        el.status.textContent = text;
      }, 50);
    }
  }

  function setTyping(on) {
    el.typing.hidden = !on;
    el.log.setAttribute("aria-busy", on ? "true" : "false");
    if (on) {
      announce(t("typing"));
      scrollToShow(el.typing, "nearest");
    } else {
      announce("");
    }
  }

  /* ---------- talking to the gateway ---------- */

  function metadata(event) {
    var meta = {
      channel: "web",
      language_choice: state.choice,
      browser_language: browserLanguage(),
      audience_hint: "parent"
    };
    if (event) {
      meta.event = event;
    }
    return meta;
  }

  function postJson(url, body, controller) {
    return window.fetch(url, {
      method: "POST",
      headers: { "Content-Type": "application/json", "Accept": "application/json" },
      body: JSON.stringify(body),
      credentials: "same-origin",
      cache: "no-store",
      signal: controller.signal
    });
  }

  function readJson(response) {
    return response.json().catch(function () {
      return null;
    });
  }

  function handleReply(data) {
    var messages = data && Array.isArray(data.messages) ? data.messages : [];
    var failsafe = Boolean(data && data.failsafe);
    var first = null;
    messages.forEach(function (m) {
      if (!m || typeof m !== "object") {
        return;
      }
      var text = typeof m.text === "string" ? m.text : "";
      var buttons = cleanButtons(m.buttons);
      if (!text.trim() && !buttons.length) {
        return;
      }
      var entry = { from: "bot", text: text, buttons: buttons };
      if (failsafe) {
        entry.failsafe = true;
      }
      var node = addEntry(entry);
      first = first || node;
    });
    if (failsafe && !first) {
      addNotice(t("offline"), true);
      return;
    }
    if (first) {
      scrollToShow(first, "start");
    }
  }

  function handleError(response, data) {
    var serverText = data && typeof data.message === "string" && data.message.trim() ? data.message : null;
    if (response.status >= 500) {
      addNotice(serverText || t("offline"), true);
      return;
    }
    if (serverText) {
      addNotice(serverText, false);
    } else if (response.status === 429) {
      addNotice(t("tooFast"), false);
    } else if (response.status === 413) {
      addNotice(t("tooLong"), false);
    } else {
      addNotice(t("errorGeneric"), false);
    }
  }

  // Sends `message` (the text, or a button's payload) and shows `shown` as the user's bubble.
  // With an event (session_start) nothing is shown for the user.
  function sendMessage(message, shown, event) {
    if (state.busy || state.exiting) {
      return false;
    }
    if (!event) {
      if (!message.trim() || message.length > MAX_LENGTH) {
        return false;
      }
      removeQuickReplies();
      scrollToShow(addEntry({ from: "user", text: shown }), "nearest");
    }
    state.busy = true;
    var controller = new AbortController();
    state.controller = controller;
    var timer = window.setTimeout(function () {
      controller.abort();
    }, REQUEST_TIMEOUT_MS);
    setTyping(true);

    var body = { session_id: state.sessionId, message: message, metadata: metadata(event) };
    postJson("/api/chat", body, controller)
      .then(function (response) {
        return readJson(response).then(function (data) {
          if (state.exiting || state.controller !== controller) {
            return;
          }
          if (response.ok) {
            handleReply(data);
          } else {
            handleError(response, data);
          }
        });
      })
      .catch(function () {
        // Network failure or timeout. A request aborted on purpose (delete / exit) shows nothing.
        if (state.exiting || state.controller !== controller) {
          return;
        }
        addNotice(t("offline"), true);
      })
      .then(function () {
        window.clearTimeout(timer);
        if (state.controller === controller) {
          state.controller = null;
          state.busy = false;
          setTyping(false);
        }
      });
    return true;
  }

  function cancelPending() {
    if (state.controller) {
      var pending = state.controller;
      state.controller = null;
      pending.abort();
    }
    state.busy = false;
    setTyping(false);
  }

  /* ---------- composer ---------- */

  function updateCounter() {
    el.counter.textContent = el.input.value.length + " / " + MAX_LENGTH;
    el.counter.classList.toggle("composer__counter--near", el.input.value.length >= MAX_LENGTH * 0.9);
  }

  function onSubmit(event) {
    event.preventDefault();
    var text = el.input.value;
    if (!text.trim()) {
      el.input.focus();
      return;
    }
    if (text.length > MAX_LENGTH) {
      addNotice(t("tooLong"), false);
      return;
    }
    if (sendMessage(text, text)) {
      el.input.value = "";
      updateCounter();
    }
    el.input.focus();
  }

  function onInputKeyDown(event) {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      el.form.requestSubmit();
    }
  }

  /* ---------- delete my conversation ---------- */

  var opener = null;

  function openDeleteDialog() {
    opener = document.activeElement;
    el.deleteError.textContent = "";
    el.deleteConfirm.disabled = false;
    el.deleteConfirm.textContent = t("confirmDelete");
    el.dialog.showModal();
    el.deleteCancel.focus();
  }

  function closeDeleteDialog() {
    if (el.dialog.open) {
      el.dialog.close();
    }
  }

  function startConversation() {
    sendMessage("", "", "session_start");
  }

  function confirmDelete() {
    var oldId = state.sessionId;
    el.deleteConfirm.disabled = true;
    el.deleteConfirm.textContent = t("deleting");
    el.deleteError.textContent = "";
    cancelPending();
    var controller = new AbortController();
    var timer = window.setTimeout(function () {
      controller.abort();
    }, REQUEST_TIMEOUT_MS);
    postJson("/api/forget", { session_id: oldId }, controller)
      .then(function (response) {
        if (!response.ok) {
          throw new Error("forget failed: " + response.status);
        }
        if (state.exiting) {
          return;
        }
        el.log.replaceChildren();
        state.transcript = [];
        storageRemove(KEY_TRANSCRIPT);
        state.sessionId = newUuid();
        storageSet(KEY_SESSION, state.sessionId);
        opener = null;
        closeDeleteDialog();
        addNotice(t("deleted"), false);   // announced by the log (role="log", polite)
        el.input.focus();
        startConversation();
      })
      .catch(function () {
        if (state.exiting) {
          return;
        }
        el.deleteConfirm.disabled = false;
        el.deleteConfirm.textContent = t("confirmDelete");
        el.deleteError.textContent = t("deleteFailed");
      })
      .then(function () {
        window.clearTimeout(timer);
      });
  }

  /* ---------- start-up ---------- */

  function restoreTranscript() {
    var raw = storageGet(KEY_TRANSCRIPT);
    if (!raw) {
      return false;
    }
    var entries;
    try {
      entries = JSON.parse(raw);
    } catch (e) {
      return false;
    }
    if (!Array.isArray(entries)) {
      return false;
    }
    entries = entries.filter(function (e) {
      return e && (e.from === "bot" || e.from === "user") && typeof e.text === "string";
    });
    if (!entries.length) {
      return false;
    }
    var lastUser = -1;
    entries.forEach(function (e, i) {
      if (e.from === "user") {
        lastUser = i;
      }
    });
    var node = null;
    entries.forEach(function (e, i) {
      e.buttons = cleanButtons(e.buttons);
      node = renderEntry(e, i > lastUser);
    });
    state.transcript = entries;
    node.scrollIntoView({ block: "end" });   // back where the reader was: the latest message
    return true;
  }

  function onExit() {
    state.exiting = true;
    if (state.controller) {
      state.controller.abort();
    }
  }

  function init() {
    el.log = document.getElementById("log");
    el.typing = document.getElementById("typing");
    el.status = document.getElementById("status");
    el.form = document.getElementById("composer");
    el.input = document.getElementById("message");
    el.counter = document.getElementById("counter");
    el.language = document.getElementById("language");
    el.privacyLink = document.getElementById("privacy-link");
    el.deleteOpen = document.getElementById("delete-open");
    el.dialog = document.getElementById("delete-dialog");
    el.deleteCancel = document.getElementById("delete-cancel");
    el.deleteConfirm = document.getElementById("delete-confirm");
    el.deleteError = document.getElementById("delete-error");

    el.input.maxLength = MAX_LENGTH;
    state.sessionId = loadSessionId();
    applyLanguage(initialLanguage());

    el.language.addEventListener("change", function () {
      if (!supported(el.language.value)) {
        return;
      }
      state.choice = el.language.value;
      storageSet(KEY_LANGUAGE, state.choice);
      applyLanguage(state.choice);
    });
    el.form.addEventListener("submit", onSubmit);
    el.input.addEventListener("keydown", onInputKeyDown);
    el.input.addEventListener("input", updateCounter);
    el.deleteOpen.addEventListener("click", openDeleteDialog);
    el.deleteCancel.addEventListener("click", closeDeleteDialog);
    el.deleteConfirm.addEventListener("click", confirmDelete);
    el.dialog.addEventListener("close", function () {
      if (opener && typeof opener.focus === "function" && document.contains(opener)) {
        opener.focus();
      }
      opener = null;
    });
    window.addEventListener("signpost:exit", onExit);

    if (!restoreTranscript()) {
      startConversation();
    }
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", init);
  } else {
    init();
  }
})();
