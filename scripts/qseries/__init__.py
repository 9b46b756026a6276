"""qseries: carry a QEMU patch series from series.yaml to checked mails."""

__version__ = "0.1.0"
