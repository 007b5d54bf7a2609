"""What the web pages (app.web) and the REST API (app.api) share about HTTP requests:
the audit record of a request, the extensions (CSRF, the rate limiter, logins), and the
API's error shape. Neither of those packages imports the other."""
