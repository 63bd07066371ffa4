// Live autodoc status. Every element carrying data-autodoc-poll shows an autodoc still
// queued or being written; the attribute is the autodoc's JSON status endpoint, which
// renders the new HTML with the same macros as the page, so there is one source of truth.
// The page hears of changes through one server-sent events stream for all its autodocs
// (data-autodoc-events, data-autodoc-id): an autodoc is refreshed when the stream says it
// changed, and every one whenever a stream opens (changes made while none was open were not
// heard; the server ends each stream after a while and the browser opens the next). Without
// EventSource the page polls instead (poll.js's timing and back-off). When the server refuses
// a stream (503: its streams are all taken, or it has no PostgreSQL) the page polls too, and
// asks for a stream again after RETRY_MS, doubling the wait up to RETRY_MAX_MS: a place that
// came free ends the polling.
(function () {
  "use strict";
  var FINAL = { done: true, failed: true };
  var ATTRIBUTE = "data-autodoc-poll";

  function live() {
    return Array.prototype.slice.call(document.querySelectorAll("[" + ATTRIBUTE + "]"));
  }

  // Read each autodoc's state once and put its parts in place; a final state ends the
  // element's refreshing.
  function refresh(elements) {
    var byUrl = {};
    elements.forEach(function (element) {
      var url = element.getAttribute(ATTRIBUTE);
      (byUrl[url] = byUrl[url] || []).push(element);
    });
    return Promise.all(Object.keys(byUrl).map(function (url) {
      return window.srcflaskPoll.json(url).then(function (state) {
        byUrl[url].forEach(function (element) {
          element.innerHTML = state[element.getAttribute("data-autodoc-part")];
          if (FINAL[state.status]) { element.removeAttribute(ATTRIBUTE); }
        });
      });
    }));
  }

  var RETRY_MS = 10000;
  var RETRY_MAX_MS = 120000;
  var poller = null;

  function poll() {
    return window.srcflaskPoll(ATTRIBUTE, 2000, 15000, refresh);
  }

  function follow(retryMs) {
    var elements = live();
    if (!elements.length) { return; }
    if (!window.EventSource) { poll(); return; }
    var ids = {};
    elements.forEach(function (element) { ids[element.getAttribute("data-autodoc-id")] = true; });
    var query = Object.keys(ids).map(function (id) { return "id=" + encodeURIComponent(id); }).join("&");
    var source = new EventSource(elements[0].getAttribute("data-autodoc-events") + "?" + query);

    // Nothing left to follow: the server's thread is freed at once.
    function settle(elements) {
      return refresh(elements).then(function () {
        if (!live().length) { source.close(); }
      }, function () { /* the next event or stream tries again */ });
    }

    source.addEventListener("open", function () {
      if (poller) { poller.stop(); poller = null; }
      settle(live());
    });
    source.addEventListener("changed", function (event) {
      settle(live().filter(function (element) {
        return element.getAttribute("data-autodoc-id") === event.data;
      }));
    });
    source.addEventListener("error", function () {
      // CONNECTING: the stream ended or dropped and the browser opens the next one itself.
      // CLOSED: refused (503, or not a stream at all): poll, and ask again later.
      if (source.readyState === EventSource.CLOSED && live().length) {
        poller = poller || poll();
        window.setTimeout(function () { follow(Math.min(retryMs * 2, RETRY_MAX_MS)); }, retryMs);
      }
    });
  }

  document.addEventListener("DOMContentLoaded", function () { follow(RETRY_MS); });
})();
