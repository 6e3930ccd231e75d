"""SMTP submission, the send API, MIME walk and HTML rewrite, spool, upstream delivery,
configuration and the `clickrelay` command line."""
