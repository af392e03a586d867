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
    deepLinking: true,
    persistAuthorization: false,
    displayRequestDuration: true,
    defaultModelsExpandDepth: 0,
    validatorUrl: null
  });
})();
