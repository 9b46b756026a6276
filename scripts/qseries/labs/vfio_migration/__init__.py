"""The VFIO migration series' lab: its devices and scenarios.

Two devices run the same scenarios: the user-space fake of the VFIO
interface (tests/fakevfio, preloaded into QEMU), and the Linux kernel's
own mtty sample driver, in a guest booted for the purpose.
"""
