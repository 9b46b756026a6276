"""The core model: a series as data, and what turns it into changes.

series.yaml and its schema (series), QEMU version ranges (versions),
templates and the child that renders them (templates, render), the kinds
of change (generators), the mail model (mail) and the result of a check
(results).  It reads files and templates; it runs no QEMU and knows no
QEMU tree beyond the files a generator is given.
"""
