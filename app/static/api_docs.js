// Swagger UI over /openapi.json. persistAuthorization stays off: a pasted token lives in this page's memory
// only, never in localStorage (the dashboard keeps tokens out of JavaScript-readable storage too).
(function () {
  "use strict";
  var root = document.getElementById("swagger-ui");
  window.ui = SwaggerUIBundle({
    url: root.getAttribute("data-spec-url"),
    domNode: root,
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
    // Deep links put an <a> inside each operation's summary <button> (axe: nested-interactive).
    deepLinking: false,
    persistAuthorization: false,
    displayRequestDuration: true,
    defaultModelsExpandDepth: 0,
    validatorUrl: null
  });
  // Swagger UI's copy-to-clipboard buttons are icons without a name (axe: button-name): name them.
  new MutationObserver(function () {
    root.querySelectorAll(".copy-to-clipboard button:not([aria-label])").forEach(function (button) {
      button.setAttribute("aria-label", "Copy to clipboard");
    });
  }).observe(root, {childList: true, subtree: true});
})();
