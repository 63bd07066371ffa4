// Live progress of training runs on the admin's Models page. Every element carrying
// data-run-poll is refreshed from that URL (the run's JSON progress endpoint), whose
// `html` is rendered by the same template as the page, until the run is no longer queued
// or running. The timing and back-off are poll.js's.
(function () {
  "use strict";

  window.srcflaskPoll("data-run-poll", 3000, 30000, function (elements) {
    return Promise.all(elements.map(function (element) {
      return window.srcflaskPoll.json(element.getAttribute("data-run-poll"), { redirect: "error" })
        .then(function (run) {
          element.innerHTML = run.html;
          if (!run.live) {
            element.removeAttribute("data-run-poll");
            // The run ended: its Cancel button no longer applies.
            var row = element.closest("tr");
            var cancel = row && row.querySelector("form[action$='/cancel']");
            if (cancel) { cancel.remove(); }
          }
        });
    }));
  });
})();
