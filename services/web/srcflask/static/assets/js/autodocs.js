// Live autodoc status. Every element carrying data-autodoc-poll is refreshed from that
// URL (the autodoc's JSON status endpoint) until its autodoc is done or failed: the
// endpoint renders the new HTML with the same macros as the page, so there is one
// source of truth. Loaded as a file: the CSP allows no inline script.
(function () {
  "use strict";
  var FINAL = { done: true, failed: true };
  var INTERVAL_MS = 2000;
  var MAX_INTERVAL_MS = 15000;
  var interval = INTERVAL_MS;

  function pending() {
    return Array.prototype.slice.call(document.querySelectorAll("[data-autodoc-poll]"));
  }

  function refresh(elements) {
    var byUrl = {};
    elements.forEach(function (element) {
      var url = element.getAttribute("data-autodoc-poll");
      (byUrl[url] = byUrl[url] || []).push(element);
    });
    return Promise.all(Object.keys(byUrl).map(function (url) {
      return fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" })
        .then(function (response) {
          if (!response.ok) { throw new Error("status " + response.status); }
          return response.json();
        })
        .then(function (state) {
          byUrl[url].forEach(function (element) {
            element.innerHTML = state[element.getAttribute("data-autodoc-part")];
            if (FINAL[state.status]) { element.removeAttribute("data-autodoc-poll"); }
          });
        });
    }));
  }

  function tick() {
    var elements = pending();
    if (!elements.length) { return; }
    refresh(elements).then(function () {
      interval = INTERVAL_MS;
    }, function () {
      // The server is restarting or the network dropped: back off, keep trying.
      interval = Math.min(interval * 2, MAX_INTERVAL_MS);
    }).then(function () {
      window.setTimeout(tick, interval);
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    window.setTimeout(tick, INTERVAL_MS);
  });
})();
