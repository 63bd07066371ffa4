// Live parts of the pages: srcflaskPoll(attribute, intervalMs, maxIntervalMs, refresh)
// refreshes every element carrying `attribute` (its value is the JSON endpoint to read)
// every intervalMs, doubling the wait up to maxIntervalMs while the server cannot be
// reached (restarting, the network dropped, the session ended), until no element carries
// it any more. `refresh(elements)` fetches and updates them and returns a promise; it
// removes the attribute from an element whose state is final. Polling starts intervalMs
// after the page is loaded, or after the call when that is later (autodocs.js falls back
// to it when its event stream is refused), and ends early when the returned handle's stop()
// is called (autodocs.js, once a stream is had again). Used by autodocs.js and models.js;
// loaded as a file before them: the CSP allows no inline script.
(function () {
  "use strict";

  window.srcflaskPoll = function (attribute, intervalMs, maxIntervalMs, refresh) {
    var interval = intervalMs;
    var stopped = false;

    function tick() {
      var elements = Array.prototype.slice.call(document.querySelectorAll("[" + attribute + "]"));
      if (stopped || !elements.length) { return; }
      refresh(elements).then(function () {
        interval = intervalMs;
      }, function () {
        interval = Math.min(interval * 2, maxIntervalMs);
      }).then(function () {
        window.setTimeout(tick, interval);
      });
    }

    function start() { window.setTimeout(tick, intervalMs); }

    if (document.readyState === "loading") {
      document.addEventListener("DOMContentLoaded", start);
    } else {
      start();
    }
    return { stop: function () { stopped = true; } };
  };

  // A JSON endpoint of this site, or a rejected promise when it does not answer 2xx.
  window.srcflaskPoll.json = function (url, options) {
    return fetch(url, Object.assign({ headers: { Accept: "application/json" }, credentials: "same-origin" },
                                    options || {}))
      .then(function (response) {
        if (!response.ok) { throw new Error("status " + response.status); }
        return response.json();
      });
  };
})();
