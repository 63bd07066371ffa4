// Live autodoc status. Every element carrying data-autodoc-poll is refreshed from that
// URL (the autodoc's JSON status endpoint) until its autodoc is done or failed: the
// endpoint renders the new HTML with the same macros as the page, so there is one
// source of truth. The timing and back-off are poll.js's.
(function () {
  "use strict";
  var FINAL = { done: true, failed: true };

  window.srcflaskPoll("data-autodoc-poll", 2000, 15000, function (elements) {
    var byUrl = {};
    elements.forEach(function (element) {
      var url = element.getAttribute("data-autodoc-poll");
      (byUrl[url] = byUrl[url] || []).push(element);
    });
    return Promise.all(Object.keys(byUrl).map(function (url) {
      return window.srcflaskPoll.json(url).then(function (state) {
        byUrl[url].forEach(function (element) {
          element.innerHTML = state[element.getAttribute("data-autodoc-part")];
          if (FINAL[state.status]) { element.removeAttribute("data-autodoc-poll"); }
        });
      });
    }));
  });
})();
